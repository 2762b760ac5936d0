"""``visio bench paths`` runs the real ingest and fan-out code and reports finite costs."""

from __future__ import annotations

import math

from loadtest.bench_paths import run_paths, synthetic_stream
from sfu.rtp import parse_header


def test_the_synthetic_stream_is_vp8_in_frames_with_keyframes() -> None:
    stream = synthetic_stream(600)
    headers = [parse_header(data) for data, _ in stream]
    assert [h.sequence_number for h in headers] == list(range(600))
    assert sum(h.marker for h in headers) == 60  # one frame end every 10 packets


def test_costs_are_positive_and_every_copy_went_out() -> None:
    result = run_paths(packets=1000, subscribers=4, repeats=1)
    assert math.isfinite(result.ingest_us_per_packet) and result.ingest_us_per_packet > 0
    assert math.isfinite(result.copy_us_per_forwarded_packet)
    assert result.copy_us_per_forwarded_packet > 0


def test_the_floor_bench_times_protect_and_send() -> None:
    from loadtest.bench_floor import run_floor

    result = run_floor(runs=1, count=500, wakeups=5)
    assert 0 < result.srtp_protect_us < 1000
    assert 0 < result.sendto_us < 1000 and 0 < result.connected_send_us < 1000
    assert 0 < result.sink_sendto_us < 1000
    assert 0 < result.wakeup_us < 100_000
