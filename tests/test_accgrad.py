"""AccGrad: concentrated on the final DNN's objects, and highest where low quality loses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import frames_of
from edgeva.accmpeg.accgrad import accgrad, block_sum, compute_accgrad, low_quality
from edgeva.metrics import match_counts
from edgeva.models import box_iou
from edgeva.video import boxes_to_mask, rects_to_map


def test_block_sum_covers_partial_blocks():
    pixels = torch.ones(1, 20, 40)
    sums = block_sum(pixels)
    assert sums.shape == (1, 2, 3)
    assert sums[0, 0, 0] == 256 and sums[0, 1, 2] == 4 * 8


@pytest.mark.parametrize("video,count,step", [("store-aisle-detection", 20, 1), ("bottle-detection", 20, 5), ("one-by-one-person-detection", 20, 1)])
def test_accgrad_mass_lies_on_the_reference_objects(yolox, video, count, step):
    frames = frames_of(video, count, step) if video != "one-by-one-person-detection" else frames_of(video, 151)[100:120]
    lows = low_quality(frames, 40)
    maps = np.concatenate([accgrad(yolox, frames[i : i + 4], lows[i : i + 4]) for i in range(0, len(frames), 4)])
    reference = yolox.detect(frames)
    inside = area = 0.0
    for m, ref in zip(maps, reference, strict=True):
        mask = boxes_to_mask(ref.above(0.4).boxes, frames[0].shape[:2], gamma=1)
        inside += m[mask].sum() / m.sum()
        area += mask.mean()
    inside, area = inside / len(maps), area / len(maps)
    print(f"{video}: {100 * inside:.0f}% of AccGrad mass inside reference boxes + 1 block, which cover {100 * area:.0f}% of the frame")
    assert inside > 0.5
    assert inside > area + 0.15  # concentrated, not just spread over big boxes


def test_lost_objects_get_more_accgrad_than_background(yolox):
    """Frames of store-aisle whose CRF-44 encoding loses reference people: AccGrad per block
    inside the lost people is higher than in the background."""
    frames = frames_of("store-aisle-detection", 67)
    lows = low_quality(frames, 44)
    references, degraded = yolox.detect(frames), yolox.detect(lows)
    lost_frames = []
    for i, (ref, low) in enumerate(zip(references, degraded, strict=True)):
        ref, low = ref.above(0.4), low.above(0.4)
        if match_counts(low, ref).fn == 0:
            continue
        iou = box_iou(torch.from_numpy(ref.boxes), torch.from_numpy(low.boxes)).numpy() if len(low) else np.zeros((len(ref), 0))
        lost = ref.boxes[(iou.max(axis=1) if iou.size else np.zeros(len(ref))) < 0.5]
        if len(lost):
            lost_frames.append((i, lost))
    assert len(lost_frames) >= 3, "CRF 44 should lose some people on store-aisle"
    ratios = []
    for i, lost in lost_frames[:6]:
        m = accgrad(yolox, [frames[i]], [lows[i]])[0]
        objects = rects_to_map([(x1, y1, x2 - x1, y2 - y1) for x1, y1, x2, y2 in lost], frames[i].shape[:2], True)
        background = ~boxes_to_mask(references[i].boxes, frames[i].shape[:2], gamma=1)
        ratios.append(m[objects].mean() / max(m[background].mean(), 1e-12))
    print("AccGrad per block, lost objects / background:", [round(r, 1) for r in ratios])
    assert np.median(ratios) > 2.0


def test_compute_accgrad_caches_per_frame(yolox, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVA_CACHE", str(tmp_path))
    from conftest import video_path

    path = video_path("people-detection")
    calls = []
    first = compute_accgrad(path, yolox, [0, 5, 12], on_frame=calls.append)
    again = compute_accgrad(path, yolox, [5, 12], on_frame=calls.append)
    assert sorted(first) == [0, 5, 12] and first[0].shape == (17, 30)
    np.testing.assert_array_equal(first[12], again[12])
    assert len(list((tmp_path / "accgrad").rglob("*.npy"))) == 3
