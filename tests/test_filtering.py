from __future__ import annotations

import pytest

from conftest import frames_of
from edgeva.filtering import FEATURES, FrameFilter, difference, frame_features


@pytest.mark.parametrize("feature", FEATURES)
def test_difference_grows_with_time_apart(feature):
    frames = frames_of("store-aisle-detection", 30)
    first, next_, far = (frame_features(frames[i], feature) for i in (0, 1, 29))
    assert difference(first, first, feature) == 0.0
    assert 0.0 <= difference(first, next_, feature) < difference(first, far, feature) <= 1.0


@pytest.mark.parametrize("feature", FEATURES)
def test_filter_sends_first_frame_and_fewer_frames_at_higher_threshold(feature):
    frames = frames_of("store-aisle-detection", 30)
    sent = {}
    for threshold in (0.0, 0.05):
        filt = FrameFilter(feature, threshold)
        sent[threshold] = [filt.check(f) for f in frames]
        assert sent[threshold][0]
    assert all(sent[0.0])
    assert sum(sent[0.05]) < len(frames)


def test_bad_filter_settings():
    with pytest.raises(ValueError, match="'colour'"):
        FrameFilter("colour")
    with pytest.raises(ValueError, match="threshold"):
        FrameFilter("pixel", 2.0)
