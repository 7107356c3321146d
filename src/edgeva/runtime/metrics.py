"""Prometheus metrics of the runtime: what every node and camera exposes at ``/metrics``.

The metric objects live here, once per process (Prometheus' own convention); the runtime's
modules call the small functions below at the points where something happens, and
:func:`serve` starts the ``/metrics`` HTTP endpoint (text exposition format) on a thread.
Labels name the node (``edge-2``, ``cloud``) or camera (``1``), so several services in one
process (the tests) stay apart. Names and meanings are listed in ``docs/operations.md``;
:data:`METRIC_NAMES` is checked against that list by a test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

__all__ = [
    "serve", "frame_read", "source_reconnected", "frame_recorded", "chunk_sent", "failover", "rpc_retry", "inference_done",
    "node_frame", "offload", "retrained", "peer_state", "watch_node", "event_published", "event_dropped",
    "METRIC_NAMES",
]

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- cameras ------------------------------------------------------------------------------------
CAMERA_FRAMES_READ = Counter("edgeva_camera_frames_read", "Frames a camera read from its source", ["camera"])
CAMERA_FRAMES = Counter("edgeva_camera_frames", "Frames recorded by a camera, by final state "
                        "(inferred | reused | dropped)", ["camera", "state"])
CAMERA_INFERRED_AT = Counter("edgeva_camera_inferred_frames", "Inferred frames by where they were inferred",
                             ["camera", "where"])
CAMERA_BYTES = Counter("edgeva_camera_bytes_sent", "Encoded bytes a camera sent (chunks, before retries)", ["camera"])
CAMERA_CHUNKS = Counter("edgeva_camera_chunks_sent", "Chunks a camera encoded and sent", ["camera"])
CAMERA_ENCODE = Histogram("edgeva_camera_encode_seconds", "Encoding time of a chunk", ["camera"],
                          buckets=_LATENCY_BUCKETS)
CAMERA_LATENCY = Histogram("edgeva_camera_frame_latency_seconds", "Capture to result back at the camera, "
                           "inferred frames", ["camera"], buckets=_LATENCY_BUCKETS)
CAMERA_FAILOVERS = Counter("edgeva_camera_failovers", "Times a camera moved to the next node of its route",
                           ["camera", "to"])
CAMERA_RECONNECTS = Counter("edgeva_camera_source_reconnects", "Times a live source was reopened (its stream "
                            "broke, ended or stalled past the watchdog)", ["camera"])
# -- nodes --------------------------------------------------------------------------------------
RPC_RETRIES = Counter("edgeva_rpc_retries", "Calls retried after UNAVAILABLE or DEADLINE_EXCEEDED (reconnects)",
                      ["peer", "method"])
NODE_INFERENCE = Histogram("edgeva_node_inference_seconds", "Worker time of one frame on a node "
                           "(measured, before the emulated compute budget)", ["node"], buckets=_LATENCY_BUCKETS)
NODE_SERVICE = Histogram("edgeva_node_service_seconds", "Time a node's worker spends on a frame, emulated "
                         "compute budget included", ["node"], buckets=_LATENCY_BUCKETS)
NODE_FRAMES = Counter("edgeva_node_frames", "Camera frames a node answered, by where they were inferred "
                      "(or dropped)", ["node", "where"])
NODE_QUEUE = Gauge("edgeva_node_queue_length", "Frames waiting or being inferred on a node", ["node"])
NODE_MODEL_VERSION = Gauge("edgeva_node_model_version", "Model version a node serves (rises with retraining)",
                           ["node"])
EDGE_OFFLOADS = Counter("edgeva_edge_offloads", "Calls an edge made to another node, by target, kind "
                        "(Infer: a frame, InferRegions: unsure regions) and outcome (ok | failed)",
                        ["node", "target", "kind", "outcome"])
EDGE_RETRAINING = Counter("edgeva_edge_retraining_rounds", "Continuous-learning rounds, by outcome "
                          "(swapped | refused by the validation gate | failed)", ["node", "outcome"])
PEER_STATE = Counter("edgeva_peer_transitions", "A peer seen going down or coming back (reconnected)",
                     ["node", "peer", "state"])
# -- events -------------------------------------------------------------------------------------
EVENTS_PUBLISHED = Counter("edgeva_mqtt_messages_published", "MQTT messages handed to the broker, by kind",
                           ["client", "kind"])
EVENTS_DROPPED = Counter("edgeva_mqtt_messages_dropped", "MQTT messages dropped (queue full while the broker "
                         "was away, or publish refused), by kind", ["client", "kind"])
EVENTS_QUEUE = Gauge("edgeva_mqtt_queue_length", "MQTT messages waiting for the broker", ["client"])

METRIC_NAMES = tuple(sorted(
    m._name + ("_total" if isinstance(m, Counter) else "")
    for m in (CAMERA_FRAMES_READ, CAMERA_FRAMES, CAMERA_INFERRED_AT, CAMERA_BYTES, CAMERA_CHUNKS, CAMERA_ENCODE,
              CAMERA_LATENCY, CAMERA_FAILOVERS, CAMERA_RECONNECTS, RPC_RETRIES, NODE_INFERENCE, NODE_SERVICE, NODE_FRAMES, NODE_QUEUE,
              NODE_MODEL_VERSION, EDGE_OFFLOADS, EDGE_RETRAINING, PEER_STATE, EVENTS_PUBLISHED, EVENTS_DROPPED,
              EVENTS_QUEUE)
))


def serve(listen: str, port: int) -> int:
    """Serve ``/metrics`` of this process on ``listen:port`` (0: a free port); returns the port.

    Raises:
        ConfigError: the address cannot be bound.
    """
    from edgeva.errors import ConfigError

    try:
        server, _thread = start_http_server(port, addr=listen, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"metrics: cannot listen on {listen}:{port} ({exc.strerror or exc})") from None
    return server.server_port


# -- hooks (one call at each point in the runtime) ----------------------------------------------
def frame_read(camera: int, count: int = 1) -> None:
    """``count`` frames read (a live source's outage counts the frames it lost as read)."""
    CAMERA_FRAMES_READ.labels(str(camera)).inc(count)


def source_reconnected(camera: int, count: int = 1) -> None:
    CAMERA_RECONNECTS.labels(str(camera)).inc(count)


def frame_recorded(camera: int, state: str, where: str | None, latency_s: float | None) -> None:
    label = str(camera)
    CAMERA_FRAMES.labels(label, state).inc()
    if state == "inferred":
        CAMERA_INFERRED_AT.labels(label, where or "").inc()
        if latency_s is not None:
            CAMERA_LATENCY.labels(label).observe(latency_s)


def chunk_sent(camera: int, nbytes: int, encode_s: float) -> None:
    label = str(camera)
    CAMERA_BYTES.labels(label).inc(nbytes)
    CAMERA_CHUNKS.labels(label).inc()
    CAMERA_ENCODE.labels(label).observe(encode_s)


def failover(camera: int, to: str) -> None:
    CAMERA_FAILOVERS.labels(str(camera), to).inc()


def rpc_retry(peer: str, method: str) -> None:
    RPC_RETRIES.labels(peer, method).inc()


def inference_done(node: str, measured_s: float, budget_s: float) -> None:
    NODE_INFERENCE.labels(node).observe(measured_s)
    NODE_SERVICE.labels(node).observe(max(measured_s, budget_s))


def node_frame(node: str, where: str | None) -> None:
    NODE_FRAMES.labels(node, where or "dropped").inc()


def offload(node: str, target: str, kind: str, ok: bool) -> None:
    EDGE_OFFLOADS.labels(node, target, kind, "ok" if ok else "failed").inc()


def retrained(node: str, outcome: str) -> None:
    """One continuous-learning round: ``swapped`` (passed the validation gate), ``refused``
    (F1 on the validation set dropped) or ``failed`` (no update came back)."""
    EDGE_RETRAINING.labels(node, outcome).inc()


def peer_state(node: str, peer: str, up: bool) -> None:
    PEER_STATE.labels(node, peer, "up" if up else "down").inc()


def watch_node(node: str, queue_length: Callable[[], float], model_version: Callable[[], float]) -> None:
    """Read a node's queue length and model version whenever ``/metrics`` is scraped."""
    NODE_QUEUE.labels(node).set_function(queue_length)
    NODE_MODEL_VERSION.labels(node).set_function(model_version)


def event_published(client: str, kind: str) -> None:
    EVENTS_PUBLISHED.labels(client, kind).inc()


def event_dropped(client: str, kind: str) -> None:
    EVENTS_DROPPED.labels(client, kind).inc()
