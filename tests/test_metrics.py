from __future__ import annotations

import numpy as np
import pytest

from conftest import frames_of
from edgeva.metrics import f1_score, match_counts
from edgeva.models import Detections
from edgeva.video import decode_chunk, encode_chunk


def _dets(*rows):
    if not rows:
        return Detections.empty()
    a = np.array(rows, np.float32)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(int))


def test_hand_computed_matches():
    ref = _dets([0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.9, 0], [50, 50, 60, 60, 0.9, 2])
    res = _dets([0, 0, 10, 11, 0.8, 0], [20, 20, 30, 30, 0.8, 2], [100, 100, 110, 110, 0.7, 0], [0, 0, 10, 10, 0.1, 0])
    counts = match_counts(res, ref, score_threshold=0.4)
    assert (counts.tp, counts.fp, counts.fn) == (1, 2, 2)  # wrong class, far box; low score ignored
    assert counts.f1 == pytest.approx(2 / (2 + 2 + 2))
    assert match_counts(_dets(), _dets()).f1 == 1.0
    agg = f1_score([res, _dets()], [ref, _dets()])
    assert agg["tp"] == 1 and agg["frames"] == 2 and agg["mean_frame_f1"] == pytest.approx((1 / 3 + 1) / 2)


def _f1_at_crf(detector, frames, crf):
    decoded = []
    for i in range(0, len(frames), 10):
        decoded += decode_chunk(encode_chunk(frames[i : i + 10], crf))
    return f1_score(detector.detect(decoded), detector.detect(frames))["f1"]


# one-by-one-person is long and mostly empty: every 10th frame spans all the people.
@pytest.mark.parametrize("video,count,step", [("store-aisle-detection", 67, 1), ("one-by-one-person-detection", 140, 10)])
def test_yolox_f1_on_reencodes(yolox, video, count, step):
    frames = frames_of(video, count, step)
    good, bad = _f1_at_crf(yolox, frames, 23), _f1_at_crf(yolox, frames, 44)
    assert good >= 0.9
    assert bad < good
