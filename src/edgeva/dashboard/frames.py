"""The picture behind a result: the camera's original frame, decoded from its source (as the
run's reference pass does), with the server's boxes drawn.

Frames are not stored in the database; the dashboard re-reads them from the source named in
the camera's row (file, image pattern or sample-video name). A reader per camera moves
forward through the source, since the live view mostly asks for later frames; an earlier
frame reopens the source. Live network streams cannot be re-read: their view says so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from edgeva.errors import EdgevaError
from edgeva.models import Detections
from edgeva.runtime.store import CameraRow

__all__ = ["FrameStore", "annotated_jpeg"]


class _Reader:
    def __init__(self, row: CameraRow):
        from edgeva import assets
        from edgeva.video import open_video

        self.uri = assets.resolve_video(row.source)
        self.size = (row.width, row.height) if row.width else None
        self.step = row.step
        self._open_video = open_video
        self._iter = None
        self.position = -1  # index of the last frame yielded

    def read(self, index: int) -> np.ndarray:
        if self._iter is None or index <= self.position:
            self._iter = iter(self._open_video(self.uri, start=index, size=self.size))
            self.position = index - 1
        for frame in self._iter:
            self.position = frame.index
            if frame.index == index:
                return frame.image
            if frame.index > index:
                break
        self._iter = None
        raise EdgevaError(f"{self.uri}: frame {index} not found")


class FrameStore:
    """Original frames of a run's cameras, with a small cache."""

    def __init__(self, cache: int = 16):
        self._readers: dict[tuple, _Reader] = {}
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._size = cache
        self._lock = threading.Lock()

    def frame(self, row: CameraRow, index: int) -> np.ndarray:
        """Frame ``index`` of the camera's source.

        Raises:
            EdgevaError: the source cannot be opened or has no such frame.
        """
        key = (row.run_id, row.camera, row.source, row.width, row.height)
        with self._lock:
            if (key, index) in self._cache:
                self._cache.move_to_end((key, index))
                return self._cache[(key, index)]
            if row.source.startswith(("rtsp://", "rtsps://", "http://", "https://")):
                raise EdgevaError(f"{row.source}: a live stream cannot be re-read for the dashboard")
            reader = self._readers.get(key) or _Reader(row)
            self._readers[key] = reader
            image = reader.read(index)
            self._cache[(key, index)] = image
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
            return image


def annotated_jpeg(image: np.ndarray, detections: Detections, caption: str) -> bytes:
    """JPEG of ``image`` with ``detections`` drawn and a caption in the top-left corner."""
    import cv2

    from edgeva.viz import draw_detections, jpeg

    out = draw_detections(image, detections)
    cv2.putText(out, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return jpeg(out)
