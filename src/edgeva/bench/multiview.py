"""Multi-view propagation measured on emulated views (two overlapping crops of one sample video).

View A is sent and inferred whole; view B sends only the part no other view covers (its
uncovered rectangle), which is inferred alone, and takes A's detections, mapped with the
homography, for the covered part. Compared with sending and inferring both views whole:
bytes sent, pixels inferred, and the F1 of each view against the final DNN (YOLOX-Nano) on
that view's original frames. The overlap is emulated: real cameras need an estimated
homography and see an object from another angle, which this cannot show.
"""

from __future__ import annotations

import numpy as np

from edgeva import assets
from edgeva.metrics.detection import f1_score
from edgeva.models.base import create_detector
from edgeva.models.detections import Detections
from edgeva.multiview import View, propagate, uncovered_mask
from edgeva.video import decode_chunk, encode_chunk, read_frames

__all__ = ["bench_multiview"]


def _sent(frames: list[np.ndarray], crf: int) -> tuple[list[np.ndarray], int]:
    chunk = encode_chunk(frames, crf)
    return decode_chunk(chunk), chunk.nbytes


def _inside(dets: Detections, keep: np.ndarray) -> Detections:
    return Detections(dets.boxes[keep], dets.scores[keep], dets.class_ids[keep], dets.names)


def bench_multiview(video: str = "car-detection", frames: int = 20, overlap: int = 192, crf: int = 28) -> dict:
    """Two views of ``video`` overlapping by ``overlap`` columns; returns the comparison."""
    source = read_frames(assets.resolve_video(video), frames)
    height, width = source[0].shape[:2]
    view_w = (width + overlap) // 2 // 2 * 2
    a, b = View("a", 0, 0, view_w, height), View("b", width - view_w, 0, view_w, height)
    mask = uncovered_mask(b, [a])
    cols = np.flatnonzero(mask.any(0))
    x0, x1 = int(cols[0]) // 2 * 2, int(cols[-1]) + 1
    golden = create_detector("yolox-nano")
    views_a, views_b = [a.render(f) for f in source], [b.render(f) for f in source]
    ref_a, ref_b = golden.detect(views_a), golden.detect(views_b)
    dec_a, bytes_a = _sent(views_a, crf)
    dec_b, bytes_b = _sent(views_b, crf)
    part_b, bytes_part = _sent([np.ascontiguousarray(v[:, x0:x1]) for v in views_b], crf)
    det_a, det_b_whole, det_part = golden.detect(dec_a), golden.detect(dec_b), golden.detect(part_b)
    merged = []
    for da, dp in zip(det_a, det_part, strict=True):
        carried = propagate(da, a, b)
        centres = (carried.boxes[:, 0] + carried.boxes[:, 2]) / 2
        carried = _inside(carried, centres < x0)
        shifted = Detections(dp.boxes + np.array([x0, 0, x0, 0], dtype=np.float32), dp.scores, dp.class_ids, dp.names)
        own = _inside(shifted, (shifted.boxes[:, 0] + shifted.boxes[:, 2]) / 2 >= x0)
        merged.append(Detections(np.concatenate([carried.boxes, own.boxes]), np.concatenate([carried.scores, own.scores]),
                                 np.concatenate([carried.class_ids, own.class_ids]), da.names))
    return {
        "video": video, "frames": frames, "view_size": [view_w, height], "overlap_px": 2 * view_w - width,
        "bytes_whole": bytes_a + bytes_b, "bytes_propagated": bytes_a + bytes_part,
        "pixels_inferred_whole": 2 * view_w * height * frames, "pixels_inferred_propagated": (view_w + x1 - x0) * height * frames,
        "f1_view_a": f1_score(det_a, ref_a)["f1"], "f1_view_b_whole": f1_score(det_b_whole, ref_b)["f1"],
        "f1_view_b_propagated": f1_score(merged, ref_b)["f1"],
    }
