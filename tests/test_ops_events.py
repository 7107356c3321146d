"""MQTT events: object start/end from a sample video through a real broker (Mosquitto on
127.0.0.1:1883, topics under a random prefix), a node's offline message when it stops or
dies, and a broker that is down stalling nothing."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from edgeva.models import Detections
from edgeva.runtime import metrics
from edgeva.runtime.camera import CameraAgent
from edgeva.runtime.events import ObjectEvents
from edgeva.runtime.opsconfig import MqttConfig
from edgeva.runtime.store import FrameRecord, FrameRow, open_store, start_run
from runtime_support import cluster_config
from test_runtime_services import running

BROKER = ("127.0.0.1", 1883)


def broker_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(BROKER) == 0


needs_broker = pytest.mark.skipif(not broker_up(), reason="no MQTT broker on 127.0.0.1:1883 (Mosquitto)")


class Subscriber:
    """Keeps every message under ``prefix/#`` (topic, payload, retained), in arrival order."""

    def __init__(self, prefix: str):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._read = 0  # messages already handed out by drain()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        ready = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(f"{prefix}/#", qos=1), None)[1]
        self.client.on_subscribe = lambda *args: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(*BROKER)
        self.client.loop_start()
        assert ready.wait(20), "could not subscribe to the broker"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def wait_for(self, predicate, timeout: float = 60.0):
        """The first message so far, or within ``timeout`` seconds, for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = next((m for m in self.messages if predicate(*m)), None)
                seen = [t for t, _, _ in self.messages]
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching message within {timeout} s; saw {seen}")
            time.sleep(0.1)

    def drain(self) -> list:
        """Messages that arrived since the last call."""
        with self._lock:
            out, self._read = self.messages[self._read:], len(self.messages)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def clear_retained(prefix: str, names: list[str]) -> None:
    """Remove the retained availability messages a test left on the shared broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    for name in names:
        client.publish(f"{prefix}/{name}/available", b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _record(frame: int, boxes: list, state: str = "inferred") -> FrameRecord:
    dets = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32),
                      np.zeros(len(boxes), np.int64))
    if state == "reused":
        return FrameRecord(1, frame, "reused", float(frame), float(frame), reuses=frame - 1)
    return FrameRecord(1, frame, "inferred", float(frame), float(frame) + 0.5, where="edge-1", detections=dets)


def test_tracker_starts_and_ends_objects_in_frame_order():
    sent = []
    settings = MqttConfig(enabled=True, topic_prefix="t", min_frames=2, max_missing=2)
    events = ObjectEvents("camera-1", settings, lambda topic, payload, **kw: sent.append((topic, payload)) or True)
    image = np.zeros((100, 100, 3), np.uint8)
    person = [10, 10, 40, 60]
    frames = {0: [], 1: [person], 2: [[12, 10, 42, 60]], 3: [[14, 10, 44, 60]], 4: [], 5: [], 6: [], 7: [person]}
    for i in frames:
        events.frame_read(i, image)
    # answered out of order (chunks complete in any order); frame 3 reused
    for i in (4, 5, 0, 1, 2, 6, 7):
        events.recorded(_record(i, frames[i]))
    events.recorded(_record(3, [], state="reused"))
    kinds = [(e["type"], e["after"]["start_frame"], e["after"]["frame"]) for e in events.published]
    assert kinds == [("new", 1, 2), ("end", 1, 2)]  # seen on 1, 2 (3 reused), gone on 4 and 5
    end = events.published[1]["after"]
    assert end["end_time"] == 5.0 and end["label"] == "person" and end["box"] == [12, 10, 42, 60]
    snapshot = [payload for topic, payload in sent if topic == "t/camera-1/person/snapshot"]
    assert len(snapshot) == 1 and cv2.imdecode(np.frombuffer(snapshot[0], np.uint8), cv2.IMREAD_COLOR).shape == (100, 100, 3)
    assert [p for t, p in sent if t == "t/camera-1/person"] == ["1", "0"]
    events.close()  # frame 7's candidate was never confirmed: no event
    assert len(events.published) == 2


@needs_broker
def test_object_events_from_a_sample_video(tmp_path, yolox, fastestdet):
    prefix = f"edgeva-test-{uuid.uuid4().hex[:8]}"
    # one-by-one-person: a person walks in around frame 66 and out around frame 191
    cameras = [{"id": 1, "source": "one-by-one-person-detection", "edge": 1, "start": 55, "frames": 150, "fps": 0,
                "encoding": {"chunk_frames": 5}}]
    config = cluster_config(tmp_path, edges=1, cameras=cameras, filter={"enabled": False},
                            mqtt={"enabled": True, "topic_prefix": prefix, "track": ["person"]})
    subscriber = Subscriber(prefix)
    try:
        with running(config, yolox, fastestdet) as (config, _):
            sessions = open_store(config.database.url)
            start_run(sessions, "ev", policy="edge-local", config_json=config.model_dump_json())
            agent = CameraAgent(config, 1, "ev", sessions)
            stats = agent.run()
        assert stats.frames_read == 150
        events = {}
        snapshots = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(e["type"] == "end" and e["after"]["frame"] > 150
                                                      for evs in events.values() for e in evs):
            for topic, payload, _ in subscriber.drain():
                if topic == f"{prefix}/events":
                    event = json.loads(payload)
                    events.setdefault(event["after"]["id"], []).append(event)
                elif topic == f"{prefix}/camera-1/person/snapshot":
                    snapshots.append(payload)
            time.sleep(0.2)
    finally:
        subscriber.close()
        clear_retained(prefix, ["camera-1"])
    spans = {i: [e["type"] for e in evs] for i, evs in events.items()}
    assert spans and all(types == ["new", "end"] for types in spans.values()), spans
    long = [evs for evs in events.values() if evs[1]["after"]["frame"] - evs[0]["after"]["start_frame"] >= 100]
    assert long, {i: (e[0]["after"]["start_frame"], e[-1]["after"]["frame"]) for i, e in events.items()}
    new, end = long[0]
    assert new["after"]["label"] == "person" and 0.5 <= new["after"]["score"] <= 1
    assert new["after"]["start_frame"] < 80 and end["after"]["frame"] > 170 and end["after"]["end_time"] >= new["after"]["start_time"]
    assert len(snapshots) == len(events)
    picture = cv2.imdecode(np.frombuffer(snapshots[0], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (432, 768, 3)


@needs_broker
def test_a_node_says_offline_when_it_stops_or_dies(tmp_path):
    prefix = f"edgeva-test-{uuid.uuid4().hex[:8]}"
    cluster_config(tmp_path, edges=2, mqtt={"enabled": True, "topic_prefix": prefix, "keepalive_s": 5})
    path = tmp_path / "cluster.yaml"  # each edge binds a free port (port 0); they need no peers here
    subscriber = Subscriber(prefix)
    procs, logs = [], [tmp_path / f"edge-{edge}.log" for edge in (1, 2)]
    try:
        for edge, log in zip((1, 2), logs, strict=True):
            with log.open("w") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "edgeva.cli", "edge", "--config", str(path), "--id",
                                               str(edge), "--run", "av"], stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        for edge, proc, log in zip((1, 2), procs, logs, strict=True):
            topic = f"{prefix}/edge-{edge}/available"
            try:
                subscriber.wait_for(lambda t, p, r, topic=topic: t == topic and p == b"online", timeout=300)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; edge-{edge} (exit {proc.poll()}) logged: {log.read_text()[-1500:]}") from None
        procs[0].send_signal(signal.SIGTERM)  # a clean stop: the node says offline itself
        subscriber.wait_for(lambda t, p, r: t == f"{prefix}/edge-1/available" and p == b"offline", timeout=60)
        procs[1].kill()  # SIGKILL: the broker publishes the node's last will
        subscriber.wait_for(lambda t, p, r: t == f"{prefix}/edge-2/available" and p == b"offline", timeout=60)
        assert procs[0].wait(30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        subscriber.close()
        clear_retained(prefix, ["edge-1", "edge-2"])


def test_a_broker_that_is_down_stalls_nothing(tmp_path, yolox, fastestdet, caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    cameras = [{"id": 3, "source": "store-aisle-detection", "edge": 1, "frames": 30, "fps": 0}]
    config = cluster_config(tmp_path, edges=1, cameras=cameras, filter={"enabled": False},
                            mqtt={"enabled": True, "port": closed_port, "queue_size": 2, "min_frames": 1,
                                  "min_score": 0.3})
    before = metrics.EVENTS_DROPPED.labels("camera-3", "event-new")._value.get()
    with caplog.at_level(logging.WARNING, logger="edgeva.runtime.mqtt"), running(config, yolox, fastestdet) as (config, _):
        sessions = open_store(config.database.url)
        start_run(sessions, "down", policy="edge-local", config_json=config.model_dump_json())
        agent = CameraAgent(config, 3, "down", sessions)
        stats = agent.run()
    with sessions() as session:
        inferred = session.scalar(select(func.count()).select_from(FrameRow).where(
            FrameRow.run_id == "down", FrameRow.state == "inferred"))
    assert stats.frames_read == 30 and inferred == 30  # every frame inferred and recorded
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{closed_port}" in warnings[0]  # one clear line
    dropped = sum(metrics.EVENTS_DROPPED.labels("camera-3", kind)._value.get()
                  for kind in ("event-new", "event-end", "snapshot", "count"))
    assert dropped - before > 0 and len(agent.ops.events.published) > 2  # more events than the queue holds
