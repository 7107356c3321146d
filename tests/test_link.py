from __future__ import annotations

import pytest

from edgeva.net import Link, Transfer, simulate


def test_one_stream_on_a_share():
    link = Link(bandwidth_mbps=2.5, streams=5, rtt_ms=100)
    (d,) = simulate([Transfer(0.0, 62_500)], link)  # 0.5 Mbit/s share -> 1 s
    assert d.transmit_s == pytest.approx(1.0) and d.queue_s == 0 and d.delay_s == pytest.approx(1.05)


def test_five_streams_fair_share_do_not_interfere():
    link = Link(bandwidth_mbps=2.5, streams=5, rtt_ms=100)
    ds = simulate([Transfer(0.0, 31_250, stream=s) for s in range(5)], link)
    assert all(d.delay_s == pytest.approx(0.55) for d in ds)


def test_five_streams_fifo_queue_behind_each_other():
    link = Link(bandwidth_mbps=2.5, streams=5, rtt_ms=100, discipline="fifo")
    ds = simulate([Transfer(0.0, 31_250, stream=s) for s in range(5)], link)  # 0.1 s each at 2.5 Mbit/s
    assert [round(d.queue_s, 6) for d in ds] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert ds[-1].delay_s == pytest.approx(0.4 + 0.1 + 0.05)


def test_a_burst_queues_on_its_own_share():
    link = Link(bandwidth_mbps=1.0, streams=1, rtt_ms=40)
    sends = [Transfer(0.0, 250_000), Transfer(0.5, 12_500), Transfer(3.0, 12_500)]  # 2 s, 0.1 s, 0.1 s
    ds = simulate(sends, link)
    assert ds[1].queue_s == pytest.approx(1.5)  # waits for the first to finish at t = 2
    assert ds[1].arrival_time == pytest.approx(2.1 + 0.02)
    assert ds[2].queue_s == 0.0
    assert simulate(sends, link) == ds  # pure


def test_bad_links_are_refused():
    with pytest.raises(ValueError, match="bandwidth"):
        Link(bandwidth_mbps=0)
    with pytest.raises(ValueError, match="stream 7"):
        simulate([Transfer(0.0, 1, stream=7)], Link(streams=5))
