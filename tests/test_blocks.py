from __future__ import annotations

import numpy as np

from edgeva.video import (
    boxes_to_mask,
    dilate,
    grid_shape,
    map_to_rects,
    psnr,
    rects_to_map,
    upsample,
)


def test_grid_shape_covers_partial_blocks():
    assert grid_shape(270, 480) == (17, 30)
    assert grid_shape(720, 1280) == (45, 80)


def test_rects_round_trip_and_are_few():
    rng = np.random.default_rng(1)
    levels = np.zeros((17, 30), np.int16)
    levels[2:9, 3:12] = -10
    levels[10:15, 20:28] = -5
    levels[rng.integers(0, 17, 5), rng.integers(0, 30, 5)] = -10
    rects = map_to_rects(levels, (270, 480))
    rebuilt = np.zeros_like(levels)
    for x, y, w, h, level in rects:
        assert x + w <= 480 and y + h <= 270
        block = rects_to_map([(x, y, w, h)], (270, 480), True)
        assert not (rebuilt[block] != 0).any(), "rectangles must be disjoint"
        rebuilt[block] = level
    np.testing.assert_array_equal(rebuilt, levels)
    assert len(rects) <= 2 + 5 + 4  # two blobs stay whole (plus the rows split around the dots)


def test_dilate_grows_by_gamma_blocks():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert dilate(mask, 2).sum() == 25
    assert dilate(mask, 0).sum() == 1


def test_upsample_and_boxes_to_mask():
    block_map = np.arange(6).reshape(2, 3)
    pixels = upsample(block_map, (20, 40))
    assert pixels.shape == (20, 40) and pixels[17, 39] == 5
    mask = boxes_to_mask(np.array([[20, 20, 40, 30]]), (64, 64), gamma=1)
    assert mask[1, 1] and mask[1, 2] and mask[0, 0] and mask[2, 3]
    assert mask.sum() == 12  # rows 0-2 x cols 0-3: the box's blocks grown by one


def test_psnr_in_region():
    a = np.zeros((32, 32, 3), np.uint8)
    b = a.copy()
    b[:16] = 10
    region = np.zeros((2, 2), bool)
    region[1] = True
    assert psnr(a, b, region) == float("inf")
    assert psnr(a, b, ~region) < 30
