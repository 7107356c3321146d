"""The balancer inside a running cluster: a camera decides which edge its next chunks go to.

Least invasive wiring: no new service and no new message. Every ``interval_s`` a camera
with a balancer polls the edges of its route (``Inference.Status``: queue length, frames
arriving per second and seconds per frame), turns them into loads (seconds of work queued,
and arriving in the next interval: L_i = (queue length + arrival rate x interval_s) x
seconds per frame, with ``load: queued-arriving``; the default ``queued`` counts the backlog
only), predicts the next interval's load with
the configured predictor, and runs the balancer on the predicted loads. If the plan moves
load off the camera's current edge, and moving this camera's own expected work (its
content complexity, frames per second, times each edge's seconds per frame) to one of the
plan's targets lowers the imbalance by at least ``min_gain``, shortens its own wait, and
the target could keep up with this camera alone (or is faster than its current edge), the
camera sends its *next* chunks to that target. Chunks already sent stay where they are and are answered and
recorded as before (the camera owns its frames' records), so every frame is still
accounted for.

Cameras act in turns (camera k on the intervals whose number is k modulo the number of
cameras, on the wall clock) so that two cameras do not both jump onto the same idle edge.

Because L_i is measured in seconds of work, it already reflects each edge's speed; the
capacities C_i default to equal (w_i = 1) and are there for loads given in frames.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np

from edgeva.runtime.balance.complexity import create_estimator
from edgeva.runtime.balance.optimizer import create_balancer, imbalance
from edgeva.runtime.balance.predictor import GruPredictor, create_predictor

__all__ = ["CameraBalancer"]

log = logging.getLogger(__name__)
GRU_REFIT = 40  # intervals of history between two fits of a gru predictor
STATUS_TIMEOUT_S = 1.0  # an edge status poll; a slow answer only delays this interval's plan (the next tick waits for it)


class CameraBalancer:
    """One camera's side of the workload optimizer.

    Args:
        config: the cluster config (its ``balancer`` section is used).
        camera: the camera agent (its ``route``, ``peers`` and ``retarget``).
    """

    def __init__(self, config, camera):
        section = config.balancer
        self.section, self.camera = section, camera
        self.edges = [name for name in camera.route if name.startswith("edge-")]
        self.balancer = create_balancer(section.name, patience=section.patience, unit=section.unit, target=section.target)
        self.predictor = create_predictor(section.predictor)
        self.estimator = create_estimator(section.estimator)
        caps = section.capacities or {}
        self.capacities = np.array([caps.get(name, 1.0) for name in self.edges])
        self.bandwidth = section.bandwidth_matrix(self.edges)  # B_ij between the route's edges, or None
        self.turn, self.turns = sorted(c.id for c in config.cameras).index(camera.cam.id), max(1, len(config.cameras))
        self.history: dict[str, list[float]] = {name: [] for name in self.edges}
        self.moves: list[tuple[float, str, str]] = []  # (time, from, to)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"{camera.cam.name}-balance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the loop: a step still polling or fitting must end before the peers close."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        interval = self.section.interval_s
        while not self._stop.wait(interval - time.time() % interval):
            try:
                self.step(math.floor(time.time() / interval))
            except Exception:  # balancing is advice: a failed poll or plan keeps the current edge
                log.exception("%s: balancing step failed", self.camera.cam.name)

    def _poll(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every edge's status, appended to the histories (all or none: they stay aligned), then
        each edge's predicted next load from its history and its neighbours'."""
        try:
            statuses = [self.camera.peers[name].status(timeout=STATUS_TIMEOUT_S) for name in self.edges]
        except Exception:
            log.debug("%s: an edge did not answer its status poll", self.camera.cam.name)
            return None  # an edge that does not answer is the fail-over's business, not the balancer's
        service = self._service_estimates(np.array([status.service_s for status in statuses]))
        arriving = self.section.interval_s if self.section.load == "queued-arriving" else 0.0
        for name, status, s in zip(self.edges, statuses, service, strict=True):
            self.history[name].append((status.queue_length + status.arrival_fps * arriving) * s)
        histories = list(self.history.values())
        if isinstance(self.predictor, GruPredictor) and len(histories[0]) % GRU_REFIT == 0:
            self.predictor.fit_edges([h[-4 * GRU_REFIT:] for h in histories])
        loads = [max(0.0, self.predictor.predict(h, histories[:i] + histories[i + 1:])) for i, h in enumerate(histories)]
        return np.array(loads), service

    def _service_estimates(self, reported: np.ndarray) -> np.ndarray:
        """Seconds a frame per edge: as reported, or, for an edge that has served nothing yet (it
        reports 0), the fastest reporting edge's time scaled by capacity. The prior is optimistic
        on purpose: an idle edge can report a real time only after it has been sent work, and
        with a near-zero estimate every move onto it looked like no change in I (measured: the
        real-cluster test moved nothing in 2 runs of 6)."""
        known = reported > 0
        if not known.any():
            return np.full(reported.shape, 1e-3)
        prior = np.min(reported[known] * self.capacities[known]) / self.capacities
        return np.where(known, reported, prior)

    def _worth_moving(self, loads: np.ndarray, service: np.ndarray, src: int, dst: int, per_s: float) -> bool:
        """Moving this camera's next interval of work from ``src`` to ``dst`` lowers I enough,
        leaves ``dst`` less loaded than ``src`` was, and ``dst`` could keep up with this camera
        alone (or is at least as fast as ``src``)."""
        work = per_s * self.section.interval_s
        trial = loads.copy()
        trial[src] = max(0.0, trial[src] - work * service[src])
        trial[dst] += work * service[dst]
        gain = imbalance(loads, self.capacities) - imbalance(trial, self.capacities)
        keeps_up = per_s * service[dst] <= 1.0 or service[dst] <= service[src]
        return gain >= self.section.min_gain and trial[dst] < loads[src] and keeps_up

    def step(self, tick: int) -> str | None:
        """One balancing interval; returns the edge the camera moved (a share of) its chunks to."""
        polled = self._poll()
        if polled is None or tick % self.turns != self.turn:
            return None
        loads, service = polled
        current = self.camera.current_node()
        if current not in self.edges:
            return None  # failed over to the cloud: not the balancer's to undo
        src = self.edges.index(current)
        plan = self.balancer.plan(loads, self.capacities, self.bandwidth)
        per_s = self.estimator.load()  # frames this camera sends per second
        split = self.camera.split() if self.section.split else None
        share, partner = (split[1], self.edges.index(split[0])) if split else (0.0, None)
        back = sum(m.amount for m in plan.moves if (m.source, m.target) == (partner, src))
        if back > 0:  # the plan moves load from the split's edge back to the current one: a smaller share
            return self._apply(plan, partner, share - self._share_of(back, per_s, service[partner]), current)
        for dst in dict.fromkeys(m.target for m in plan.moves if m.source == src):
            if partner not in (None, dst):
                continue  # one other edge at a time
            amount = sum(m.amount for m in plan.moves if m.source == src and m.target == dst)
            delta = min(1.0 - share, self._share_of(amount, per_s, service[src])) if self.section.split else 1.0
            if self._worth_moving(loads, service, src, dst, per_s * delta):
                return self._apply(plan, dst, share + delta, current)
        return None

    def _share_of(self, amount: float, per_s: float, service_s: float) -> float:
        """The share of this camera's chunks that carries ``amount`` seconds of work per interval."""
        return amount / max(per_s * self.section.interval_s * service_s, 1e-9)

    def _apply(self, plan, dst: int, share: float, current: str) -> str:
        share = min(1.0, max(0.0, share))
        self.camera.retarget(self.edges[dst], share)
        self.moves.append((time.time(), current, self.edges[dst]))
        if share >= 1.0:
            log.info("%s: balancer %s moves its next chunks %s -> %s (plan: I %.2f -> %.2f)", self.camera.cam.name,
                     self.balancer.name, current, self.edges[dst], plan.before, plan.after)
        else:
            log.info("%s: balancer %s sends %.0f%% of its next chunks to %s, the rest to %s (plan: I %.2f -> %.2f)",
                     self.camera.cam.name, self.balancer.name, 100 * share, self.edges[dst], current, plan.before, plan.after)
        return self.edges[dst]
