"""Every gRPC call of the runtime goes through here: servers, channels, the shared token,
TLS (mutual, if asked), message bounds, emulated links, deadlines and retries with back-off.

* A server binds where the config says (loopback by default; a non-loopback address without
  TLS and a token is refused unless ``security.allow_insecure``), rejects calls without the
  shared token (``UNAUTHENTICATED``), clients without a certificate from ``tls_ca`` under
  ``mutual_tls`` (the TLS handshake fails), and messages above ``max_message_mb``
  (``RESOURCE_EXHAUSTED``, by gRPC itself); the server keeps serving.
* A :class:`Peer` is a client of one node. Its calls carry the token (and under
  ``mutual_tls`` its certificate), a deadline, and, where the config gives the node a link,
  the emulated transfer time of the request (:class:`EmulatedLink`), since every node here
  shares one machine's loopback.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Collection
from concurrent import futures
from typing import Any

import grpc

from edgeva.backoff import Backoff, retrying
from edgeva.errors import ConfigError, EdgevaError
from edgeva.net.link import Link, LinkQueue
from edgeva.runtime import metrics
from edgeva.runtime.config import NodeConfig, SecurityConfig, host_port, is_loopback
from edgeva.runtime.proto import runtime_pb2 as pb
from edgeva.runtime.proto import runtime_pb2_grpc as pb_grpc

__all__ = ["RemoteError", "EmulatedLink", "Peer", "make_server", "wait_ready", "RETRYABLE", "pb", "pb_grpc"]

log = logging.getLogger(__name__)

# Codes after which another attempt (or another node) may succeed: the node is unreachable or slow.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_TOKEN_KEY = "authorization"
MAX_CONCURRENT_CALLS = 64  # calls a server handles or queues at once; more are answered RESOURCE_EXHAUSTED


class RemoteError(EdgevaError):
    """A call to another node failed; ``code`` is the gRPC status code."""

    def __init__(self, node: str, address: str, method: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{node} at {address}: {method} failed ({code.name}: {details})")
        self.node, self.code = node, code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


def _message_options(security: SecurityConfig) -> list[tuple[str, int]]:
    size = security.max_message_bytes
    return [("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)]


class _TokenCheck(grpc.ServerInterceptor):
    """Rejects every call whose metadata lacks ``authorization: Bearer <token>``."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

        def deny(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        for key, value in handler_call_details.invocation_metadata or ():
            if key == _TOKEN_KEY and hmac.compare_digest(value.encode(), self._expected):
                return continuation(handler_call_details)
        return self._deny


def _server_credentials(security: SecurityConfig) -> grpc.ServerCredentials:
    pair = [(security.tls_key.read_bytes(), security.tls_cert.read_bytes())]
    if security.mutual_tls:
        return grpc.ssl_server_credentials(pair, root_certificates=security.tls_ca.read_bytes(), require_client_auth=True)
    return grpc.ssl_server_credentials(pair)


def make_server(node: NodeConfig, security: SecurityConfig, add_servicers: Callable[[grpc.Server], None],
                *, max_workers: int = 16) -> tuple[grpc.Server, int]:
    """A started server for ``node``; returns it and the port it is bound to.

    Raises:
        ConfigError: the address cannot be bound, or it is not a loopback address and the
            cluster has no TLS and token (or mutual TLS) and does not ``allow_insecure``.
    """
    host = node.listen or node.host
    address = host_port(host, node.port)
    if not (security.secure or security.allow_insecure or is_loopback(host)):
        raise ConfigError(f"refusing to listen on {address} without TLS and a token (or mutual TLS); "
                          "set security.tls_cert/tls_key and token_env, or security.allow_insecure: true")
    token = security.shared_token()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[_TokenCheck(token)] if token else [],
        options=_message_options(security),
        maximum_concurrent_rpcs=MAX_CONCURRENT_CALLS,
    )
    add_servicers(server)
    try:
        if security.tls_cert:
            port = server.add_secure_port(address, _server_credentials(security))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address} ({exc})") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {address} (address in use or not local)")
    server.start()
    return server, port


class EmulatedLink:
    """The live counterpart of :mod:`edgeva.net.link`: its :class:`~edgeva.net.link.LinkQueue`
    on the monotonic clock.

    ``transmit(nbytes)`` sleeps for the queueing + serialisation + one-way latency a message
    would see, so the decision engine's trade-offs are real on a loopback cluster.
    """

    def __init__(self, link: Link):
        self.link = link
        self._queue = LinkQueue(link.rate_bytes_per_s())
        self._lock = threading.Lock()

    def transmit(self, nbytes: int) -> None:
        with self._lock:
            _, done = self._queue.transmit(time.monotonic(), nbytes)
        time.sleep(max(0.0, done - time.monotonic()) + self.link.one_way_s)

    def reply(self) -> None:
        time.sleep(self.link.one_way_s)


def _channel_credentials(security: SecurityConfig) -> grpc.ChannelCredentials:
    root = (security.tls_ca or security.tls_cert).read_bytes()
    if security.mutual_tls:
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=security.tls_key.read_bytes(),
                                            certificate_chain=security.tls_cert.read_bytes())
    return grpc.ssl_channel_credentials(root_certificates=root)


class Peer:
    """A client of one node (edge or cloud) with its stubs, token, deadline and link.

    Args:
        name: the node's name ("edge-2", "cloud"), for errors and logs.
        address: ``host:port``.
        security: token and TLS settings shared by the cluster.
        link: emulate this link on every call (None: plain loopback).
    """

    def __init__(self, name: str, address: str, security: SecurityConfig, link: Link | None = None):
        self.name, self.address = name, address
        options = _message_options(security)
        if security.tls_cert:
            self.channel = grpc.secure_channel(address, _channel_credentials(security), options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        token = security.shared_token()
        self._metadata = ((_TOKEN_KEY, f"Bearer {token}"),) if token else ()
        self.link = EmulatedLink(link) if link else None
        self._stubs = {
            "Ingest": pb_grpc.IngestStub(self.channel),
            "Inference": pb_grpc.InferenceStub(self.channel),
            "Cloud": pb_grpc.CloudStub(self.channel),
        }

    def call(self, service: str, method: str, request: Any, *, timeout: float) -> Any:
        """One call with a deadline.

        Raises:
            RemoteError: any failure, with the gRPC code (``retryable`` for UNAVAILABLE and
                DEADLINE_EXCEEDED).
        """
        if self.link:
            self.link.transmit(request.ByteSize())
        try:
            reply = getattr(self._stubs[service], method)(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise RemoteError(self.name, self.address, method, exc.code(), exc.details() or "") from None
        if self.link:
            self.link.reply()
        return reply

    def call_with_retry(self, service: str, method: str, request: Any, *, timeout: float, retries: int,
                        backoff_s: float, stop: threading.Event | None = None,
                        retry_on: Collection[grpc.StatusCode] = RETRYABLE) -> Any:
        """``call``, retried ``retries`` times on the ``retry_on`` codes, waiting ``backoff_s``,
        ``2 * backoff_s``, ... in between (logged). Raises the last :class:`RemoteError`."""

        def note(exc: Exception, attempt: int, delay: float) -> None:
            log.warning("%s; retry %d/%d in %.1f s", exc, attempt, retries, delay)
            metrics.rpc_retry(self.name, method)

        return retrying(lambda: self.call(service, method, request, timeout=timeout),
                        backoff=Backoff(backoff_s, 2.0, max(backoff_s, 30.0)), attempts=retries + 1, stop=stop,
                        should_retry=lambda e: isinstance(e, RemoteError) and e.code in retry_on, on_retry=note)

    def status(self, timeout: float = 2.0) -> pb.NodeStatus:
        return self.call("Inference", "Status", pb.StatusRequest(), timeout=timeout)

    def close(self) -> None:
        self.channel.close()


def wait_ready(peer: Peer, *, timeout: float, backoff_s: float = 0.1) -> None:
    """Poll ``peer`` until it answers, backing off up to 2 s between attempts.

    Raises:
        RemoteError: still unreachable after ``timeout`` seconds, or a non-retryable answer
            (a wrong token, for example).
    """
    deadline = time.monotonic() + timeout
    attempts = 0

    def poll() -> None:
        nonlocal attempts
        attempts += 1
        peer.status(timeout=max(0.1, min(2.0, deadline - time.monotonic())))

    def note(exc: Exception, attempt: int, delay: float) -> None:
        log.info("%s not ready (%s); retrying in %.1f s", peer.name, exc.code.name, delay)

    try:
        retrying(poll, backoff=Backoff(backoff_s, 2.0, max(backoff_s, 2.0)), deadline=deadline, on_retry=note,
                 should_retry=lambda e: isinstance(e, RemoteError) and e.retryable)
    except RemoteError as exc:
        if exc.retryable:
            raise RemoteError(peer.name, peer.address, "Status", exc.code,
                              f"unreachable after {attempts} attempts over {timeout:.1f} s") from None
        raise


def add_service(server: grpc.Server, service: str, handlers: dict[str, Callable[[Any, grpc.ServicerContext], Any]]) -> None:
    """Register ``handlers`` (method name -> ``handler(request, context)``) as ``service``.

    Handlers are plain functions that raise instead of calling ``context.abort``; errors
    become status codes here, so a bad
    request never kills the server: :class:`~edgeva.runtime.wire.BadMessage` and other
    :class:`EdgevaError` -> INVALID_ARGUMENT, a request refused for room (``Overloaded``) or
    a full queue -> RESOURCE_EXHAUSTED, work that ran out of time -> DEADLINE_EXCEEDED,
    anything else -> INTERNAL (logged). Methods without a handler answer UNIMPLEMENTED.
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    from edgeva.runtime.admission import Expired, Overloaded
    from edgeva.runtime.worker import QueueFull

    def guard(name: str, handler: Callable) -> Callable:
        def method(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return handler(request, context)
            except (Overloaded, QueueFull) as exc:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            except (Expired, FutureTimeout, TimeoutError) as exc:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"{service}.{name}: {exc or 'deadline passed'}")
            except EdgevaError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Exception as exc:  # a bug in a handler: report it, keep serving
                log.exception("%s.%s failed", service, name)
                context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

        return method

    base = getattr(pb_grpc, f"{service}Servicer")
    servicer = type(f"{service}Handlers", (base,), {name: guard(name, h) for name, h in handlers.items()})()
    getattr(pb_grpc, f"add_{service}Servicer_to_server")(servicer, server)
