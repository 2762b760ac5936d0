"""``visio bench forward`` runs end to end and reports sane numbers (no performance targets)."""

from __future__ import annotations

import argparse
import math
import os

import pytest

from loadtest import bench
from loadtest.bench_forward import ForwardOptions, format_report, run_forward

pytestmark = pytest.mark.media


def test_forward_bench_with_two_subscribers_reports_positive_finite_figures() -> None:
    pinnable = len(os.sched_getaffinity(0)) >= 2
    affinity_before = os.sched_getaffinity(0)
    options = ForwardOptions(subscribers=2, duration=2.0, warmup=0.0, max_warmup=0.0,
                             pin=pinnable, server_cpu=min(affinity_before),
                             client_cpu=max(affinity_before))
    result = run_forward(options)

    assert os.sched_getaffinity(0) == affinity_before  # the caller's pinning is restored
    assert result.packets_in > 0
    assert result.packets_out > 0
    assert result.delivered > 0
    assert result.delivered_per_subscriber_min > 0
    assert result.publisher_packets_sent > 0
    for name in ("window_s", "in_pps", "out_pps", "sfu_cpu_s", "sfu_cpu_percent",
                 "us_per_packet_out", "us_per_packet_in", "delivery_ratio"):
        value = getattr(result, name)
        assert math.isfinite(value) and value > 0, (name, value)
    assert result.counters_delta["consumer_errors"] == 0
    assert result.counters_delta["ingress_errors"] == 0
    if pinnable:
        assert result.environment["sfu_cpus"] == [options.server_cpu]
    report = format_report(result)
    assert "µs CPU / forwarded packet" in report
    assert result.command.startswith("visio bench forward --subscribers 2")


def test_bench_forward_command_line_defaults() -> None:
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args(["forward"])
    assert (args.subscribers, args.duration, args.audio, args.json) == (20, 10.0, False, False)
    args = parser.parse_args(["forward", "--subscribers", "3", "--audio", "--json"])
    assert (args.subscribers, args.audio, args.json) == (3, True, True)


def test_forward_bench_with_transport_cc_subscribers() -> None:
    """Subscribers that report transport-cc make the SFU stamp and estimate: still sane."""
    affinity = os.sched_getaffinity(0)
    options = ForwardOptions(subscribers=2, duration=2.0, warmup=0.0, max_warmup=0.0,
                             transport_cc=True, pin=len(affinity) >= 2,
                             server_cpu=min(affinity), client_cpu=max(affinity))
    result = run_forward(options)
    assert result.packets_out > 0 and result.delivered > 0
    assert math.isfinite(result.us_per_packet_out) and result.us_per_packet_out > 0
    assert result.counters_delta["consumer_errors"] == 0
    assert "--transport-cc" in result.command
