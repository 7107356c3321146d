"""TileClipper: calibration, thresholds and the scheme on a real clip with motion."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from conftest import frames_of
from edgeva.models import Detections, create_detector
from edgeva.schemes import SchemeContext, Server, create_scheme
from edgeva.schemes.tileclipper import (
    TileThreshold,
    calibrate_tile,
    f2_score,
    mobile_tiles,
    tile_edges,
)
from edgeva.video import EncoderSettings

CLIP = "store-aisle-detection"  # two shoppers walk down an aisle of static shelves


def test_tile_edges_cover_the_frame_on_even_pixels():
    for length in (270, 360, 432, 480):
        edges = tile_edges(length, 4)
        assert edges[0] == 0 and edges[-1] == length and len(edges) == 5
        assert all(b - a >= 2 and (b - a) % 2 == 0 for a, b in zip(edges, edges[1:]))
    with pytest.raises(ValueError, match="cannot split 6 pixels into 4 tiles"):
        tile_edges(6, 4)


def test_calibration_finds_the_bitrate_that_separates_moving_tiles():
    rates = np.array([100, 110, 520, 95, 480, 105, 600, 90.0])
    truth = rates > 300
    lower, upper = calibrate_tile(rates, truth)
    threshold = TileThreshold.from_calibration(rates, truth, gamma=1.75, cluster_size=10, object_ratio_limit=0.1)
    assert threshold.empty is not None and (lower, upper) == (threshold.lower, threshold.upper)
    assert threshold.decide(550.0) and not threshold.decide(100.0)
    assert f2_score(np.array([True, False]), np.array([True, False])) == 1.0
    assert f2_score(np.array([False, True]), np.array([True, False])) == 0.0


def test_tile_without_objects_uses_gamma_outliers():
    rates = np.array([100, 104, 98, 101.0])
    threshold = TileThreshold.from_calibration(rates, np.zeros(4, bool), gamma=1.75, cluster_size=10, object_ratio_limit=0.1)
    assert threshold.empty is None and isinstance(threshold.objects, deque)
    assert not threshold.decide(101.0)  # below median + 1.75 std
    assert threshold.decide(400.0)  # a burst of bits: something moved in


def test_only_moving_objects_mark_tiles():
    rows, cols = [0, 100, 200], [0, 100, 200]
    person = 0
    first = Detections(np.array([[10, 10, 40, 40], [120, 120, 150, 150]]), np.array([0.9, 0.9]), np.array([person, person]))
    last = Detections(np.array([[10, 10, 40, 40], [150, 20, 190, 60]]), np.array([0.9, 0.9]), np.array([person, person]))
    mask = mobile_tiles(first, last, rows, cols)
    # the static box (top-left tile) is not marked; the moved one is, where it was and where it went
    assert mask.tolist() == [[False, True], [False, True]]


@pytest.fixture(scope="module")
def replay():
    frames = frames_of(CLIP, 50)
    ctx = SchemeContext(server=Server(create_detector("yolox-nano", score_threshold=0.1)), settings=EncoderSettings(fps=16.7),
                        frame_size=frames[0].shape[:2], fps=16.7)
    scheme = create_scheme("tileclipper", ctx, crf=34, calibration_chunks=2)
    scheme.reset()
    outcomes = [scheme.process(frames[i : i + 10], i) for i in range(0, 50, 10)]
    return frames, scheme, outcomes


def test_tileclipper_sends_changing_tiles_and_drops_static_ones(replay):
    frames, scheme, outcomes = replay
    sent = np.stack(scheme.sent_tiles)
    assert sent[:2].all()  # calibration chunks go whole
    after = sent[2:]
    assert 0 < after.mean() < 1, "after calibration some tiles must be dropped and some sent"
    # Tiles that went carry more change between consecutive frames than tiles that did not.
    motion = []
    for chunk in range(2, 5):
        clip = np.stack(frames[chunk * 10 : chunk * 10 + 10]).astype(np.int16)
        diff = np.abs(np.diff(clip, axis=0)).mean(axis=(0, 3))
        motion.append([diff[ys, xs].mean() for ys, xs in scheme._tile_slices()])
    motion = np.array(motion)
    assert motion[after].mean() > 1.5 * motion[~after].mean()
    # Fewer bytes than the calibration chunks, which sent every tile.
    assert np.mean([o.nbytes for o in outcomes[2:]]) < np.mean([o.nbytes for o in outcomes[:2]])


def test_tileclipper_has_a_result_for_every_frame(replay):
    frames, _scheme, outcomes = replay
    assert [o.first_frame for o in outcomes] == [0, 10, 20, 30, 40]
    assert sum(len(o.detections) for o in outcomes) == len(frames)
    assert all(o.sent_frames in (0, o.frames) for o in outcomes)
    assert sum(len(d) > 0 for o in outcomes for d in o.detections) >= 40  # shoppers are found in reassembled frames
