"""Multi-view propagation on emulated overlapping crops of a sample video."""

from __future__ import annotations

import numpy as np
import pytest

from edgeva import assets
from edgeva.models.detections import Detections
from edgeva.multiview import View, homography, map_boxes, propagate, uncovered_mask
from edgeva.video import open_video

LEFT = View("left", x=0, y=0, width=300, height=270)
RIGHT = View("right", x=180, y=20, width=300, height=250, scale=1.5)  # overlaps LEFT's x 180..300, zoomed


def test_a_box_maps_across_views_within_one_pixel():
    source_box = np.array([200.0, 60.0, 260.0, 180.0])  # in the overlap, source pixels
    in_left = source_box  # LEFT is the source's top-left corner at scale 1
    in_right = (source_box - [180, 20, 180, 20]) * 1.5  # by hand: shift by RIGHT's offset, zoom 1.5
    mapped = map_boxes(in_left[None], homography(LEFT, RIGHT))[0]
    assert np.abs(mapped - in_right).max() <= 1.0
    back = map_boxes(mapped[None], homography(RIGHT, LEFT))[0]
    assert np.abs(back - in_left).max() <= 1.0


def test_rendered_views_show_the_same_pixels_where_they_overlap():
    frame = next(iter(open_video(assets.resolve_video("people-detection")))).image
    left, right = LEFT.render(frame), View("right", 180, 20, 300, 250).render(frame)
    x, y = 200, 60  # a source pixel in the overlap
    assert np.array_equal(left[y, x], right[y - 20, x - 180])


def test_only_the_uncovered_part_of_a_view_is_sent():
    mask = uncovered_mask(RIGHT, [LEFT])
    # LEFT covers source x < 300, i.e. RIGHT's x < (300 - 180) * 1.5 = 180 of its 450 columns
    assert mask.shape == (375, 450)
    assert mask[:, :180].sum() == 0 and mask[:, 180:].all()
    assert mask.mean() == pytest.approx(270 / 450)


def test_propagate_keeps_boxes_that_land_in_the_other_view():
    dets = Detections(np.array([[200, 60, 260, 180], [10, 10, 50, 50]], dtype=np.float32),
                      np.array([0.9, 0.8], dtype=np.float32), np.array([0, 0]))
    out = propagate(dets, LEFT, RIGHT)
    assert len(out.scores) == 1 and out.scores[0] == pytest.approx(0.9)
    assert np.abs(out.boxes[0] - [30, 60, 120, 240]).max() <= 1.0
