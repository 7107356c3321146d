"""Content-complexity estimators: work per second from the filter's decisions and the objects found."""

from __future__ import annotations

import pytest

from edgeva import assets
from edgeva.filtering import FrameFilter
from edgeva.runtime.balance.complexity import (
    ESTIMATORS,
    FilterObjects,
    FilterRate,
    create_estimator,
)
from edgeva.video import open_video


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_filter_rate_and_objects_by_hand():
    clock = Clock()
    rate, objects = FilterRate(window_s=2.0, clock=clock), FilterObjects(window_s=2.0, per_object=0.05, clock=clock)
    for i in range(40):  # 2 s at 20 fps; every other frame sent, 4 objects in each result
        clock.now = 100.0 + (i + 1) * 0.05
        for est in (rate, objects):
            est.frame(sent=i % 2 == 0)
            if i % 2 == 0:
                est.result(4)
    assert rate.load() == pytest.approx(10.0)  # 20 sent frames in the 2 s window
    assert objects.load() == pytest.approx(10.0 * (1 + 0.05 * 4))
    clock.now += 5.0  # nothing for longer than the window: the load decays to 0
    assert rate.load() == 0.0 and objects.load() == 0.0


def test_busy_content_weighs_more_than_idle_content():
    loads = {}
    for video in ("car-detection", "bottle-detection"):  # cars come and go; the bottle table barely changes
        clock, flt = Clock(), FrameFilter("pixel", 0.01)
        est = FilterRate(window_s=1000.0, clock=clock)
        for n, frame in enumerate(open_video(assets.resolve_video(video))):
            if n >= 150:
                break
            clock.now += 0.1
            est.frame(flt.check(frame.image))
        loads[video] = est.load()
    assert loads["car-detection"] > 10 * loads["bottle-detection"]


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_every_estimator_starts_idle(name):
    assert create_estimator(name).load() == 0.0
