"""Where independent tasks run: in this process (``serial``) or on a Ray cluster (``ray``).

A job (an evaluation, AccGrad generation) builds a *worker* that loads its models once
(``factory(*args)``), then calls one of its methods on many independent argument tuples.
An :class:`Executor` owns the runtime (nothing, or a Ray runtime it starts or joins) and
gives a :class:`WorkerPool`: one worker in-process, or one Ray actor per worker, each
loading the models once and serving many tasks. Results are handed back as each task ends
(for progress bars) and returned in call order; a task that raises becomes a
:class:`TaskFailure` carrying the one-line error, and the other tasks go on.

Executors are registered by name (``EXECUTORS``), so a job asks for one by its CLI name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from edgeva.errors import ConfigError, EdgevaError
from edgeva.registry import Registry

__all__ = ["Executor", "WorkerPool", "TaskFailure", "EXECUTORS", "create_executor", "list_executors", "check_ray_address", "init_ray"]

OnDone = Callable[[int, Any], None]  # (call index, result or TaskFailure)


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: its index among the calls, the one-line error, the exception."""

    index: int
    error: str
    exception: BaseException


def one_line(exc: BaseException) -> str:
    """An exception as one line: edgeva's own errors as their message, others with their type."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, EdgevaError) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WorkerPool(ABC):
    """Workers of one kind, each built once; :meth:`map` runs calls of one method on them."""

    size: int = 1

    def share(self, value: Any) -> Any:
        """A handle to pass ``value`` to many calls without copying it for each (Ray's object store)."""
        return value

    @abstractmethod
    def map(self, method: str, calls: Sequence[tuple], on_done: OnDone | None = None) -> list[Any]:
        """``worker.method(*call)`` for every call; results (or TaskFailure) in call order."""

    def close(self) -> None:  # noqa: B027  (an in-process worker is just dropped)
        """Release the workers (Ray: end the actors, freeing their CPUs for the next pool)."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Executor(ABC):
    """A runtime for worker pools; a context manager that starts and stops it.

    Args:
        workers: workers per pool (None: one per CPU the runtime has; serial: always 1).
        address: an existing cluster to join (Ray: ``host:port``, ``ray://host:port`` or ``auto``).
        gpus_per_worker: accelerators each worker reserves (Ray places it on a node that has them).
    """

    name: ClassVar[str] = "executor"

    def __init__(self, *, workers: int | None = None, address: str | None = None, gpus_per_worker: float = 0.0):
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: must be at least 1")
        self.workers, self.address, self.gpus_per_worker = workers, address, gpus_per_worker
        self._depth = 0

    def __enter__(self) -> Executor:
        """Start the runtime; nested ``with`` blocks share it (one start, one stop)."""
        if self._depth == 0:
            self.start()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.stop()

    def start(self) -> None:  # noqa: B027  (the serial executor has no runtime)
        """Start or join the runtime."""

    def stop(self) -> None:  # noqa: B027
        """Stop what :meth:`start` started (never a cluster that was joined)."""

    @abstractmethod
    def pool(self, factory: Callable[..., Any], *args: Any) -> WorkerPool:
        """Workers built by ``factory(*args)`` (a class: one instance per worker)."""


EXECUTORS: Registry[type[Executor]] = Registry("executor")
list_executors = EXECUTORS.names


def create_executor(name: str, **options: Any) -> Executor:
    """The executor registered as ``name`` (``serial``, ``ray``), built with ``options``."""
    try:
        cls = EXECUTORS[name]
    except ValueError as exc:
        raise ConfigError(f"--executor {name!r}: {exc}") from None
    return cls(**options)


# -- serial ---------------------------------------------------------------------------------
class _LocalPool(WorkerPool):
    def __init__(self, worker: Any):
        self.worker = worker

    def map(self, method: str, calls: Sequence[tuple], on_done: OnDone | None = None) -> list[Any]:
        results: list[Any] = []
        for index, call in enumerate(calls):
            try:
                result: Any = getattr(self.worker, method)(*call)
            except Exception as exc:  # noqa: BLE001  (recorded; the other tasks go on)
                result = TaskFailure(index, one_line(exc), exc)
            results.append(result)
            if on_done:
                on_done(index, result)
        return results


@EXECUTORS.register("serial")
class SerialExecutor(Executor):
    """Every task in this process, one after the other, on one worker."""

    name = "serial"

    def pool(self, factory: Callable[..., Any], *args: Any) -> WorkerPool:
        return _LocalPool(factory(*args))


# -- Ray ------------------------------------------------------------------------------------
def init_ray(options: dict[str, Any], *, attempts: int = 2) -> None:
    """``ray.init(**options)``; a local runtime that does not come up is started again, once.
    Ray gives its raylet 30 s to register and then raises a bare ``Exception``; a test run on a
    loaded 2-core machine saw it happen once (not reproduced alone)."""
    ray = _ray()
    for attempt in range(attempts):
        try:
            ray.init(**options)
            return
        except (ConnectionError, RuntimeError, ValueError):
            raise  # bad input: retrying cannot help
        except Exception:
            ray.shutdown()
            if "address" in options or attempt == attempts - 1:
                raise


def check_ray_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast, with one line, when nothing answers at a Ray address (``ray.init`` would
    otherwise retry for a minute). ``auto`` (a cluster started on this machine) is left to Ray."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__.replace("Error", "").lower() or "no answer"
        raise ConfigError(f"--ray-address {address}: no Ray cluster reachable there ({reason})") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'edgeva[ray]' (make install includes it)") from None
    return ray


class _RayPool(WorkerPool):
    MAX_RESTARTS = 1  # Ray restarts a dead worker (its process killed, out of memory, node lost) once

    def __init__(self, ray: Any, actors: list[Any]):
        self.ray, self.actors, self.size = ray, actors, len(actors)

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self.actors = []

    def map(self, method: str, calls: Sequence[tuple], on_done: OnDone | None = None) -> list[Any]:
        return _RayMap(self.ray, self.actors, self.MAX_RESTARTS, method, calls, on_done).run()


class _RayMap:
    """One :meth:`_RayPool.map`: two calls in flight per actor (the next one waits at the actor).

    When an actor's process dies, every call in flight on it fails with Ray's ``ActorDiedError``;
    only the oldest of them was running (an actor runs its calls in order), so that one is the
    failed task and the calls queued behind it go back to the queue. The actor gets calls again
    once Ray has restarted it (a probe answers); calls refused while it restarts
    (``ActorUnavailableError``) did not run and are queued again. An actor that died more often
    than Ray restarts it gets no more calls; the others take them.
    """

    PROBE = -1  # the call index of a readiness probe

    def __init__(self, ray: Any, actors: list[Any], max_restarts: int, method: str, calls: Sequence[tuple],
                 on_done: OnDone | None):
        self.ray, self.method, self.calls, self.on_done, self.max_restarts = ray, method, calls, on_done, max_restarts
        self.results: list[Any] = [None] * len(calls)
        self.queue = list(range(len(calls)))[::-1]  # popped from the end: call order
        self.pending: dict[Any, tuple[int, int]] = {}  # ref -> (call index or PROBE, actor slot)
        self.in_flight: list[list[Any]] = [[] for _ in actors]  # per actor slot, call refs in submission order
        self.deaths = [0] * len(actors)
        self.actors = actors

    def usable(self, slot: int) -> bool:
        return self.deaths[slot] <= self.max_restarts

    def fill(self, slot: int) -> None:
        while self.queue and self.usable(slot) and len(self.in_flight[slot]) < 2:
            index = self.queue.pop()
            ref = getattr(self.actors[slot], self.method).remote(*self.calls[index])
            self.pending[ref] = (index, slot)
            self.in_flight[slot].append(ref)

    def fill_all(self) -> None:
        for slot in range(len(self.actors)):
            if not any(s == slot and i == self.PROBE for i, s in self.pending.values()):
                self.fill(slot)

    def finish(self, index: int, result: Any) -> None:
        self.results[index] = result
        if self.on_done:
            self.on_done(index, result)

    def run(self) -> list[Any]:
        from ray.exceptions import ActorUnavailableError, RayActorError

        self.fill_all()
        while self.pending:
            [ref], _ = self.ray.wait(list(self.pending), num_returns=1)
            index, slot = self.pending.pop(ref)
            try:
                result = self.ray.get(ref)
            except ActorUnavailableError:  # restarting: the call did not run
                self.requeue(slot, ref, index)
            except RayActorError as exc:
                if index == self.PROBE:  # the restart failed: the actor is gone
                    self.deaths[slot] = self.max_restarts + 1
                else:
                    self.actor_died(slot, ref, index, exc)
            except Exception as exc:  # noqa: BLE001  (recorded; the other tasks go on)
                cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the worker's exception
                self.in_flight[slot].remove(ref)
                self.finish(index, TaskFailure(index, one_line(cause), cause))
            else:
                if index != self.PROBE:
                    self.in_flight[slot].remove(ref)
                    self.finish(index, result)
            self.fill_all()
        for index in self.queue[::-1]:  # only when every actor died for good
            self.finish(index, TaskFailure(index, "no Ray worker left: every worker process died", RuntimeError()))
        return self.results

    def probe(self, slot: int, *, wait_s: float = 0.0) -> None:
        """Give ``slot`` calls again once it answers (Ray restarts a dead actor in the background)."""
        if self.usable(slot):
            time.sleep(wait_s)
            self.pending[self.actors[slot].__ray_ready__.remote()] = (self.PROBE, slot)

    def requeue(self, slot: int, ref: Any, index: int) -> None:
        if index != self.PROBE:
            self.in_flight[slot].remove(ref)
            self.queue.append(index)
        if not any(s == slot and i == self.PROBE for i, s in self.pending.values()):
            self.probe(slot, wait_s=0.2)

    def actor_died(self, slot: int, ref: Any, index: int, exc: Exception) -> None:
        refs, self.in_flight[slot] = self.in_flight[slot], []
        indices = [index if r == ref else self.pending.pop(r)[0] for r in refs]
        self.deaths[slot] += 1
        failed, *behind = indices
        self.queue.extend(behind[::-1])  # next out of the queue, in call order
        detail = " ".join(str(exc).split())[:160]
        error = f"the Ray worker process died while running it (killed, out of memory or its node lost): {detail}"
        self.finish(failed, TaskFailure(failed, error, exc))
        self.probe(slot)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Tasks on Ray actors: a local Ray runtime sized to this machine, started and stopped
    here, or an existing cluster joined at ``address``. Each actor reserves one CPU (and
    ``gpus_per_worker`` GPUs) and builds its worker once. Workers read videos and the cache
    from paths they must see too: on several machines, shared storage (docs/scaling.md)."""

    name = "ray"
    # Passed to every worker so it finds the same assets and cache as this process.
    FORWARDED_ENV = ("EDGEVA_ASSETS", "EDGEVA_CACHE", "EDGEVA_OFFLINE")

    def start(self) -> None:
        ray = _ray()
        self._started = False
        if ray.is_initialized():  # a runtime this process already has (tests, notebooks)
            return
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ warnings would break the one-line errors
        env = {k: os.environ[k] for k in self.FORWARDED_ENV if k in os.environ}
        # One worker per CPU, each with its pinned torch threads: more threads than cores. With
        # OpenMP's default busy-waiting they spin against each other; measured idle on 2 cores
        # (`edgeva bench eval --frames 10`), Ray took 59.8 s against serial 22.1 s, and 27.1 s
        # with passive waiting (the same numbers: only how idle threads wait changes).
        env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "runtime_env": {"env_vars": env}}
        if self.address:
            check_ray_address(self.address)
            options["address"] = self.address
        else:
            options |= {"num_cpus": os.cpu_count() or 1, "include_dashboard": False}
        try:
            init_ray(options)
        except Exception as exc:  # Ray raises bare Exceptions too (a raylet that never registered)
            hint = ("; a cluster with token authentication needs RAY_AUTH_MODE=token and its token here (docs/scaling.md)"
                    if self.address and "RAY_AUTH_MODE" not in os.environ else "")
            raise ConfigError(f"--ray-address {self.address or 'local'}: cannot start or join Ray ({one_line(exc)}){hint}") from None
        self._started = True

    def stop(self) -> None:
        if getattr(self, "_started", False):
            with contextlib.suppress(Exception):
                _ray().shutdown()
            self._started = False

    def pool(self, factory: Callable[..., Any], *args: Any) -> WorkerPool:
        ray = _ray()
        resources = ray.cluster_resources()
        if self.gpus_per_worker and resources.get("GPU", 0) < self.gpus_per_worker:
            raise ConfigError("--device cuda: the Ray cluster has no GPU (its workers would wait for one forever)")
        count = self.workers or max(1, int(resources.get("CPU", 1)))
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=_RayPool.MAX_RESTARTS)(factory)
        actors = [remote.remote(*args) for _ in range(count)]
        try:
            ray.get([a.__ray_ready__.remote() for a in actors])  # a worker that cannot build its models fails here, once
        except Exception as exc:  # noqa: BLE001
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, EdgevaError):
                raise cause from None
            raise EdgevaError(f"Ray workers could not start: {one_line(cause)}") from None
        return _RayPool(ray, actors)
