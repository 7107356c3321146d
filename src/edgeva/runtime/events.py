"""Tracked-object events of a camera, in the spirit of Frigate's ``frigate/events``.

:class:`ObjectEvents` follows the objects in a camera's results, frame by frame in source
order (results of chunks answered out of order are put back in order first): a detection of
a tracked label continues the object of that label it overlaps most (IoU >= ``iou``) in the
previous inferred frame, else starts a candidate. A candidate seen in ``min_frames`` inferred
frames becomes an object: a ``new`` event on ``<prefix>/events`` (label, score, top score,
box, times) and, with ``snapshots``, a JPEG of the frame with its box on
``<prefix>/<camera>/<label>/snapshot``. An object missing from ``max_missing`` consecutive
inferred frames has left: an ``end`` event with ``end_time``. ``<prefix>/<camera>/<label>``
carries the number of objects of that label in view whenever it changes. Reused (filtered)
and dropped frames carry no new information and leave the objects as they are; when the
camera stops, the objects still in view end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeva.models import Detections
from edgeva.models.detections import COCO_NAMES
from edgeva.runtime.opsconfig import MqttConfig
from edgeva.runtime.store import FrameRecord

__all__ = ["ObjectEvents", "TrackedObject"]

Publish = Callable[..., bool]  # publish(topic, payload, kind=..., retain=...)


@dataclass
class TrackedObject:
    id: str
    label: str
    box: list[float]
    score: float
    top_score: float
    start_time: float
    frame_time: float
    frame: int
    start_frame: int
    seen: int = 1
    missing: int = 0
    announced: bool = False
    end_time: float | None = None

    def as_event(self, camera: str, has_snapshot: bool) -> dict:
        return {"id": self.id, "camera": camera, "label": self.label, "score": round(self.score, 4),
                "top_score": round(self.top_score, 4), "box": [round(v, 1) for v in self.box], "start_frame": self.start_frame, "frame": self.frame,
                "frame_time": self.frame_time, "start_time": self.start_time, "end_time": self.end_time,
                "has_snapshot": has_snapshot}


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class ObjectEvents:
    """Object events of one camera.

    Args:
        camera: the camera's name (``camera-1``), as it appears in topics and events.
        settings: the cluster's ``mqtt`` section (tracking rules, topic prefix, snapshots).
        publish: where messages go (:meth:`edgeva.runtime.mqtt.Publisher.publish`).
        keep_frames: frames read and not yet answered that are kept for snapshots.
    """

    def __init__(self, camera: str, settings: MqttConfig, publish: Publish, *, keep_frames: int = 64):
        self.camera, self.settings, self._publish = camera, settings, publish
        self.track = set(settings.track) if settings.track else None
        self.keep_frames = keep_frames
        self.objects: list[TrackedObject] = []
        self._order: deque[int] = deque()  # frames read, in source order, not yet processed
        self._records: dict[int, FrameRecord] = {}
        self._images: dict[int, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self.published: list[dict] = []  # every event, in order (for logs and tests)

    # -- input ------------------------------------------------------------------------------
    def frame_read(self, index: int, image: np.ndarray | None) -> None:
        """A frame left the source (before any result): remember its place and picture."""
        self._order.append(index)
        if image is not None and self.settings.snapshots:
            self._images[index] = image
            while len(self._images) > self.keep_frames:
                self._images.pop(next(iter(self._images)))

    def recorded(self, record: FrameRecord) -> None:
        """A frame's final state; processed once every earlier frame's is known."""
        self._records[record.frame] = record
        while self._order and self._order[0] in self._records:
            index = self._order.popleft()
            self._step(self._records.pop(index), self._images.pop(index, None))

    def close(self, now: float | None = None) -> None:
        """The camera stopped: whatever is still in view ends."""
        for record in sorted(self._records.values(), key=lambda r: r.frame):
            self._step(record, self._images.pop(record.frame, None))
        self._records.clear()
        end = now if now is not None else time.time()
        for obj in self.objects:
            if obj.announced:
                self._end(obj, end)
        self.objects = []
        self._publish_counts()

    # -- tracking ---------------------------------------------------------------------------
    def _candidates(self, dets: Detections) -> list[tuple[str, list[float], float]]:
        out = []
        for box, score, cid in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist(), strict=True):
            label = COCO_NAMES[cid] if 0 <= cid < len(COCO_NAMES) else str(cid)
            if score >= self.settings.min_score and (self.track is None or label in self.track):
                out.append((label, box, score))
        return out

    def _step(self, record: FrameRecord, image: np.ndarray | None) -> None:
        if record.state != "inferred" or record.detections is None:
            return  # a reused or dropped frame tells nothing new
        found = self._candidates(record.detections)
        pairs = sorted(((_iou(obj.box, box), i, j) for i, obj in enumerate(self.objects)
                        for j, (label, box, _) in enumerate(found) if obj.label == label), reverse=True)
        used_obj, used_det = set(), set()
        for overlap, i, j in pairs:
            if overlap < self.settings.iou or i in used_obj or j in used_det:
                continue
            used_obj.add(i)
            used_det.add(j)
            obj, (_, box, score) = self.objects[i], found[j]
            obj.box, obj.score, obj.top_score = box, score, max(obj.top_score, score)
            obj.frame, obj.frame_time, obj.seen, obj.missing = record.frame, record.t_capture, obj.seen + 1, 0
        for j, (label, box, score) in enumerate(found):
            if j not in used_det:
                self.objects.append(TrackedObject(f"{record.t_capture:.6f}-{uuid.uuid4().hex[:6]}", label, box, score,
                                                  score, record.t_capture, record.t_capture, record.frame, record.frame))
                used_obj.add(len(self.objects) - 1)
        kept = []
        for i, obj in enumerate(self.objects):
            if i not in used_obj:
                obj.missing += 1
                if obj.missing >= self.settings.max_missing or not obj.announced:
                    if obj.announced:
                        self._end(obj, record.t_capture)
                    continue  # an unconfirmed candidate that vanished is forgotten
            elif not obj.announced and obj.seen >= self.settings.min_frames:
                self._new(obj, image)
            kept.append(obj)
        self.objects = kept
        self._publish_counts()

    # -- output -----------------------------------------------------------------------------
    def _send(self, kind: str, obj: TrackedObject, has_snapshot: bool) -> None:
        event = {"type": kind, "before": obj.as_event(self.camera, has_snapshot),
                 "after": obj.as_event(self.camera, has_snapshot)}
        self.published.append(event)
        self._publish(f"{self.settings.topic_prefix}/events", json.dumps(event), kind=f"event-{kind}")

    def _new(self, obj: TrackedObject, image: np.ndarray | None) -> None:
        obj.announced = True
        snapshot = image is not None and self.settings.snapshots
        self._send("new", obj, snapshot)
        if snapshot:
            from edgeva.viz import draw_detections, jpeg

            dets = Detections(np.asarray([obj.box], np.float32), np.asarray([obj.score], np.float32),
                              np.asarray([COCO_NAMES.index(obj.label)], np.int64))
            self._publish(f"{self.settings.topic_prefix}/{self.camera}/{obj.label}/snapshot",
                          jpeg(draw_detections(image, dets)), kind="snapshot")

    def _end(self, obj: TrackedObject, when: float) -> None:
        obj.end_time = max(when, obj.frame_time)
        self._send("end", obj, False)

    def _publish_counts(self) -> None:
        counts: dict[str, int] = {}
        for obj in self.objects:
            if obj.announced:
                counts[obj.label] = counts.get(obj.label, 0) + 1
        for label in set(counts) | set(self._counts):
            if counts.get(label, 0) != self._counts.get(label, 0):
                self._publish(f"{self.settings.topic_prefix}/{self.camera}/{label}", str(counts.get(label, 0)),
                              kind="count")
        self._counts = counts
