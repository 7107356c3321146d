"""Runtime parts without servers: registries, policies, offload quality, regions, the
inference queue's compute budget, the drift collector, the results store, the wire format,
admission, the frame ledger, deadlines, back-off and the emulated link."""

from __future__ import annotations

import filecmp
import itertools
import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import frames_of
from edgeva.backoff import Backoff, retrying
from edgeva.models import Detections
from edgeva.net.link import Link
from edgeva.runtime import encoding, policy, worker
from edgeva.runtime.admission import (
    MAX_CALL_S,
    Admission,
    Deadline,
    Expired,
    FrameLedger,
    Overloaded,
)
from edgeva.runtime.edge import regions_of
from edgeva.runtime.learning import DriftCollector
from edgeva.runtime.policy import (
    CLOUD,
    ClusterView,
    EdgeLocal,
    EdgeShortest,
    OffloadQuality,
    ShortestCloudThreshold,
)
from edgeva.runtime.proto import PROTO, regenerate
from edgeva.runtime.rpc import EmulatedLink
from edgeva.runtime.store import (
    DetectionRow,
    FrameRecord,
    FrameRow,
    ResultWriter,
    open_store,
    start_run,
)
from edgeva.runtime.wire import (
    BadMessage,
    chunk_from_pb,
    decode_frames,
    detections_from_pb,
    detections_to_pb,
    encode_frame,
)
from edgeva.runtime.worker import InferenceQueue
from edgeva.video import QualityMap


@pytest.mark.parametrize(
    "register,existing",
    [(encoding.register_scheme, "uniform"), (policy.register_policy, "edge-shortest"), (worker.register_worker, "detector")],
)
def test_registries_reject_duplicate_names(register, existing):
    with pytest.raises(ValueError, match="already registered"):
        register(existing)(lambda *args: None)


@pytest.mark.parametrize("name", encoding.list_schemes())
def test_every_scheme_gives_a_quality_for_a_chunk(name, tmp_path):
    from edgeva.accmpeg import QualitySelector, SelectorMeta, save_selector
    from edgeva.runtime.config import EncodingConfig

    selector = QualitySelector().load_pretrained()  # untrained head: enough to exercise the wiring
    selector.meta = SelectorMeta(final_dnn="yolox-nano", crf_high=30, crf_low=40, accgrad_scale=1.0, accgrad_threshold=0.2)
    save_selector(selector, tmp_path / "sel.pt")
    frames = frames_of("people-detection", 3)
    quality = encoding.create_scheme(EncodingConfig(scheme=name, checkpoint=tmp_path / "sel.pt")).quality(frames, 0)
    assert isinstance(quality, (int, QualityMap))


def _view(queues: dict[str, int], down: tuple[str, ...] = ()) -> ClusterView:
    view = ClusterView("edge-1", [n for n in queues if n != "edge-1"], lambda: queues["edge-1"], lambda: 0.01)
    for name, length in queues.items():
        if name != "edge-1":
            view.report(name, length, 0.01)
    for name in down:
        view.mark_down(name)
    return view


def test_policies_place_frames_by_queue_length():
    assert EdgeLocal().place(_view({"edge-1": 9, "edge-2": 0})) == "edge-1"
    assert EdgeShortest().place(_view({"edge-1": 5, "edge-2": 2, "edge-3": 3})) == "edge-2"
    assert EdgeShortest().place(_view({"edge-1": 2, "edge-2": 2})) == "edge-1"  # ties stay home
    assert EdgeShortest().place(_view({"edge-1": 5, "edge-2": 0}, down=("edge-2",))) == "edge-1"
    threshold = ShortestCloudThreshold(3)
    assert threshold.place(_view({"edge-1": 4, "edge-2": 3, CLOUD: 0})) == CLOUD
    assert threshold.place(_view({"edge-1": 4, "edge-2": 2, CLOUD: 0})) == "edge-2"
    assert threshold.place(_view({"edge-1": 4, "edge-2": 3, CLOUD: 0}, down=(CLOUD,))) == "edge-2"


def test_view_counts_frames_sent_since_the_last_report():
    view = _view({"edge-1": 1, "edge-2": 0})
    for _ in range(3):
        view.sent("edge-2")
    assert view.queue_length("edge-2") == 3
    assert EdgeShortest().place(view) == "edge-1"
    view.report("edge-2", 0, 0.01)
    assert view.queue_length("edge-2") == 0


def test_offload_quality_follows_bandwidth_and_queue():
    quality = OffloadQuality(budget_s=0.3)
    pixels = 480 * 270
    assert quality.choose(pixels, None, 0.0) == quality.levels[0]
    fast, slow = Link(bandwidth_mbps=100, streams=1, rtt_ms=10), Link(bandwidth_mbps=0.5, streams=1, rtt_ms=10)
    assert quality.choose(pixels, fast, 0.0) == quality.levels[0]
    worse = quality.choose(pixels, slow, 0.0)
    assert worse[0] * 100 - worse[1] < quality.levels[0][0] * 100 - quality.levels[0][1]
    assert quality.choose(pixels, fast, wait_s=5.0) == quality.levels[0]  # a long queue: a fast link still sends the best
    rank = quality.levels.index
    assert rank(quality.choose(pixels, slow, wait_s=0.29)) > rank(worse)  # on a slow link the queue's wait costs quality
    for _ in range(20):
        quality.observe(23, nbytes=100, pixels=pixels)  # frames turn out tiny: the best level fits the slow link
    assert quality.choose(pixels, slow, 0.0) == quality.levels[0]


def test_regions_merge_overlaps_and_stay_in_the_frame():
    dets = Detections(np.array([[10, 10, 30, 30], [25, 25, 50, 50], [300, 200, 320, 215]], np.float32),
                      np.array([0.3, 0.3, 0.3]), np.array([0, 0, 1]))
    rects = regions_of(dets, (220, 330))
    assert len(rects) == 2
    for x1, y1, x2, y2 in rects:
        assert 0 <= x1 < x2 <= 330 and 0 <= y1 < y2 <= 220
        assert (x2 - x1) % 2 == 0 and (y2 - y1) % 2 == 0
    assert rects[0][0] <= 10 and rects[0][2] >= 50


class _SleepWorker:
    version = 0

    def __init__(self, seconds: float):
        self.seconds = seconds

    def infer(self, images):
        time.sleep(self.seconds)
        return [Detections.empty() for _ in images]


@pytest.mark.parametrize("delay_factor,fps_cap,expected", [(1.0, None, 0.01), (4.0, None, 0.04), (1.0, 20.0, 0.05)])
def test_queue_emulates_compute_budget(delay_factor, fps_cap, expected):
    q = InferenceQueue(_SleepWorker(0.01), queue_size=8, delay_factor=delay_factor, fps_cap=fps_cap)
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        start = time.perf_counter()
        results = q.infer_now([image] * 5, timeout=10)
        elapsed = time.perf_counter() - start
        assert len(results) == 5 and all(r.finished >= r.started for r in results)
        assert elapsed >= 5 * expected * 0.95
        assert q.service_s >= expected * 0.95  # a loaded machine only makes it slower
        assert len(q) == 0
    finally:
        q.stop()


def test_queue_reports_the_frames_arriving_over_the_last_second():
    """The balancer's `queued-arriving` load: frames queued in the last second, then none."""
    q = InferenceQueue(_SleepWorker(0.001), queue_size=16)
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        assert q.arrival_fps == 0.0
        q.infer_now([image] * 6, timeout=10)
        assert q.arrival_fps == 6.0
        time.sleep(q.ARRIVAL_WINDOW_S + 0.05)
        assert q.arrival_fps == 0.0
    finally:
        q.stop()


def test_drift_collector_keeps_least_confident_frames_per_window():
    collector = DriftCollector(window=5, keep=2)
    scores = [0.9, 0.2, 0.8, 0.1, 0.7]
    out = None
    for i, s in enumerate(scores):
        out = collector.add(np.full((2, 2, 3), i, np.uint8), Detections(np.zeros((1, 4)), [s], [0]))
    assert [int(f[0, 0, 0]) for f in out] == [1, 3]
    assert collector.add(np.zeros((2, 2, 3), np.uint8), Detections.empty()) is None  # a new window started


def test_frame_record_rejects_incomplete_states():
    with pytest.raises(ValueError, match="reason"):
        FrameRecord(1, 0, "dropped", 0.0, 0.0)
    with pytest.raises(ValueError, match="reuses"):
        FrameRecord(1, 0, "reused", 0.0, 0.0)
    with pytest.raises(ValueError, match="state"):
        FrameRecord(1, 0, "lost", 0.0, 0.0)


def test_writer_is_idempotent_on_run_camera_frame(tmp_path):
    sessions = open_store(str(tmp_path / "r.db"))
    start_run(sessions, "r1", policy="edge-local", config_json="{}")
    dets = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32), [0.9, 0.8], [0, 2])
    for attempt in range(2):  # the same batch re-sent, as after an edge failure
        writer = ResultWriter(sessions, "r1", batch_size=3, flush_s=0.05)
        for frame in range(7):
            writer.put(FrameRecord(1, frame, "inferred", 0.0, 1.0, where=f"edge-{attempt + 1}", detections=dets))
        writer.put(FrameRecord(1, 7, "reused", 0.0, 1.0, reuses=6))
        writer.close()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(FrameRow)) == 8
        assert session.scalar(select(func.count()).select_from(DetectionRow)) == 14
        assert set(session.scalars(select(FrameRow.where).where(FrameRow.state == "inferred"))) == {"edge-2"}


def test_wire_round_trip_and_rejections():
    dets = Detections(np.array([[1, 2, 3, 4]], np.float32), [0.5], [7])
    back = detections_from_pb(detections_to_pb(dets))
    np.testing.assert_allclose(back.boxes, dets.boxes)
    assert back.class_ids.tolist() == [7]
    bad = detections_to_pb(dets)
    bad.class_ids[0] = 500
    with pytest.raises(BadMessage, match="class ids"):
        detections_from_pb(bad)
    image = frames_of("people-detection", 1)[0]
    msg = encode_frame(image, scale=0.5, crf=30)
    assert (msg.width, msg.height) == (240, 136) and decode_frames(msg)[0].shape == (136, 240, 3)
    for field, value, match in [("codec", "mpeg9", "codec"), ("width", 100000, "frame size"), ("frame_count", 0, "frame_count")]:
        broken = type(msg)()
        broken.CopyFrom(msg)
        setattr(broken, field, value)
        with pytest.raises(BadMessage, match=match):
            chunk_from_pb(broken)
    garbage = type(msg)()
    garbage.CopyFrom(msg)
    garbage.packets[0].data = b"\x00\x00\x01" + bytes(range(200))
    with pytest.raises(BadMessage):
        decode_frames(garbage)


def test_committed_stubs_match_the_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    written = regenerate(tmp_path)
    for path in written:
        assert filecmp.cmp(path, PROTO.with_name(path.name), shallow=False), (
            f"{path.name} is stale: run `python -m edgeva.runtime.proto`")


def test_admission_takes_room_all_at_once_or_not_at_all():
    admission = Admission(4, "edge-1")
    release = admission.admit(3, wait_s=0)
    with pytest.raises(Overloaded, match=r"overloaded \(3 of 4 frames held; 2 more refused\)"):
        admission.admit(2, wait_s=0.05)
    assert admission.held == 3  # the refused request reserved nothing
    with pytest.raises(Overloaded, match="exceeds its queue of 4"):
        admission.admit(5, wait_s=10)  # can never fit: refused at once
    threading.Timer(0.1, lambda: [release() for _ in range(3)]).start()
    admission.admit(4, wait_s=30)  # waits for the room, then takes it whole
    assert admission.held == 4 and admission.refused == 2


def test_ledger_joins_running_and_answered_frames_and_redoes_failed_ones():
    ledger = FrameLedger(keep=2)
    deadline = Deadline.within(10)
    keys = [("run", 1, 0), ("run", 1, 1)]
    futures, fresh = ledger.claim(keys, deadline)
    assert fresh == [0, 1]
    later = Deadline.within(60)
    again, fresh = ledger.claim(keys, later)
    assert fresh == [] and again == futures and ledger.joined == 2
    assert ledger.deadline(keys[0]).at == later.at  # the work now serves the later caller too
    futures[0].set_result("done")
    futures[1].set_exception(Expired("queued too long"))
    third, fresh = ledger.claim(keys, later)
    assert fresh == [1] and third[0] is futures[0] and third[1] is not futures[1]
    ledger.abandon([keys[1]], Overloaded("refused"))
    assert isinstance(third[1].exception(), Overloaded)


def test_deadlines_are_bounded_even_without_one():
    assert Deadline.within(None).remaining() <= MAX_CALL_S  # a call without a deadline still ends
    assert Deadline.within(1e9).remaining() <= MAX_CALL_S
    assert Deadline.within(-5).expired()


def test_retrying_gives_up_after_attempts_deadline_or_stop():
    calls = []

    def failing():
        calls.append(time.monotonic())
        raise OSError("down")

    with pytest.raises(OSError):
        retrying(failing, backoff=Backoff(0.01, 2.0, 0.02), attempts=4, should_retry=lambda e: True)
    assert len(calls) == 4 and list(itertools.islice(Backoff(0.01, 2.0, 0.02).delays(), 4)) == [0.01, 0.02, 0.02, 0.02]
    calls.clear()
    with pytest.raises(OSError):
        retrying(failing, backoff=Backoff(0.05), deadline=time.monotonic() + 0.2, should_retry=lambda e: True)
    assert 2 <= len(calls) <= 4
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    calls.clear()
    with pytest.raises(OSError):
        retrying(failing, backoff=Backoff(5.0, 1.0, 5.0), stop=stop, should_retry=lambda e: True)  # the wait is cut short
    assert len(calls) == 1
    with pytest.raises(ValueError):
        retrying(lambda: int("x"), backoff=Backoff(), should_retry=lambda e: isinstance(e, OSError))  # not retried


def test_the_emulated_link_queues_like_the_model():
    link = EmulatedLink(Link(bandwidth_mbps=8.0, streams=1, rtt_ms=0, discipline="fifo"))  # 1 MB/s
    start = time.monotonic()
    threads = [threading.Thread(target=link.transmit, args=(20_000,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 0.06  # three 20 ms transfers one after another, not side by side
