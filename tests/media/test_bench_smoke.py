"""``visio bench forward`` runs end to end and reports sane numbers (no performance targets)."""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

import pytest

from loadtest import bench
from loadtest.bench_forward import (
    ForwardOptions,
    ForwardResult,
    format_report,
    result_json,
    run_forward,
)

pytestmark = pytest.mark.media

HEADLINE = ("sfu_cpu_us_per_forwarded_packet", "sfu_cpu_us_per_ingested_packet", "forwarded_pps",
            "sfu_cpu_pct", "client_cpu_us_per_received_packet", "client_cpu_pct")


def assert_headline(result: ForwardResult, subscribers: int, publishers: int) -> dict[str, Any]:
    """The JSON's top-level headline keys exist, are finite and agree with the raw counts."""
    data: dict[str, Any] = json.loads(result_json(result))
    for key in HEADLINE:
        assert isinstance(data[key], float) and math.isfinite(data[key]) and data[key] > 0, key
    assert math.isfinite(data["loss_pct"]) and 0 <= data["loss_pct"] <= 100
    assert math.isfinite(data["ingress_loss_pct"]) and 0 <= data["ingress_loss_pct"] <= 100
    # Every ingested packet is forwarded to each subscriber: the two per-packet figures
    # differ by the fan-out (medians of sub-windows, hence the tolerance).
    fan_out = data["sfu_cpu_us_per_ingested_packet"] / data["sfu_cpu_us_per_forwarded_packet"]
    assert 0.5 * subscribers <= fan_out <= 1.5 * subscribers, fan_out
    assert data["forwarded_pps"] <= data["ingested_pps"] * subscribers * 1.5
    assert len(data["samples"]) == len(result.samples) >= 2
    # The run taken apart: with every video hidden nothing is forwarded, so the difference
    # is defined (finite); tiny runs are noisy, so only the idle share is bounded.
    for key in ("sfu_marginal_us_per_forwarded_packet", "sfu_marginal_us_per_ingested_packet"):
        assert isinstance(data[key], float) and math.isfinite(data[key]), key
    assert 0 <= data["sfu_idle_cpu_pct"] <= 100
    assert data["publishers"] == publishers
    return data


def test_forward_bench_with_two_subscribers_reports_positive_finite_figures() -> None:
    pinnable = len(os.sched_getaffinity(0)) >= 2
    affinity_before = os.sched_getaffinity(0)
    options = ForwardOptions(subscribers=2, duration=2.0, repeats=2, warmup=0.0, max_warmup=0.0,
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
    assert_headline(result, 2, 1)
    if pinnable:
        assert result.environment["sfu_cpus"] == [options.server_cpu]
    report = format_report(result)
    assert "µs CPU / forwarded packet" in report
    assert result.command.startswith("visio bench forward --subscribers 2")


def test_bench_forward_command_line_defaults() -> None:
    parser = argparse.ArgumentParser()
    bench.configure_parser(parser)
    args = parser.parse_args(["forward"])
    assert (args.subscribers, args.publishers, args.duration, args.audio, args.json) == (
        20, 1, 10.0, False, False)
    args = parser.parse_args(["forward", "--subscribers", "3", "--publishers", "2",
                              "--seconds", "4", "--audio", "--json"])
    assert (args.subscribers, args.publishers, args.duration, args.audio, args.json) == (
        3, 2, 4.0, True, True)
    assert bench.main(parser.parse_args(["forward", "--publishers", "0"])) == 2  # refused
    # one subscriber at least must go on measuring
    assert bench.main(parser.parse_args(["forward", "--subscribers", "3", "--sinks", "3"])) == 2
    args = parser.parse_args(["forward", "--sinks", "5", "--replay"])
    assert (args.sinks, args.replay) == (5, True)


def test_forward_bench_with_transport_cc_subscribers_and_two_publishers() -> None:
    """Subscribers that report transport-cc make the SFU stamp and estimate: still sane.

    Two publishers: every subscriber receives both videos, so the room forwards 2 x 2.
    """
    affinity = os.sched_getaffinity(0)
    options = ForwardOptions(subscribers=2, publishers=2, duration=2.0, repeats=2, warmup=0.0,
                             max_warmup=0.0, transport_cc=True, pin=len(affinity) >= 2,
                             server_cpu=min(affinity), client_cpu=max(affinity))
    result = run_forward(options)
    assert result.packets_out > 0 and result.delivered > 0
    assert math.isfinite(result.us_per_packet_out) and result.us_per_packet_out > 0
    assert result.counters_delta["consumer_errors"] == 0
    assert "--transport-cc" in result.command and "--publishers 2" in result.command
    # the reports came straight from the sockets (IncomingRtpTap), not through aiortc
    assert result.counters_delta["rtcp_feedback_direct"] > 0
    assert result.counters_delta["rtcp_malformed"] == 0
    assert_headline(result, 2, 2)


def test_forward_bench_with_kernel_sinks_and_a_replayed_publisher() -> None:
    """Three of four subscribers drop their media in the kernel once it flows: the SFU still
    forwards to all four (fan-out 4), the one reader receives everything and measures loss,
    and the publisher replays pre-encoded VP8 (no encoder)."""
    affinity = os.sched_getaffinity(0)
    options = ForwardOptions(subscribers=4, sinks=3, replay=True, duration=2.0, repeats=2,
                             warmup=1.0, max_warmup=5.0, pin=len(affinity) >= 2,
                             server_cpu=min(affinity), client_cpu=max(affinity))
    result = run_forward(options)
    assert result.sinks == 3 and "--sinks 3 --replay" in result.command
    assert_headline(result, 4, 1)
    assert result.packets_out >= 3.5 * result.packets_in  # the sinks are still served
    assert result.delivered_per_subscriber_min > 0  # the reader's packets, not a sink's 0
    assert 0.9 <= result.delivery_ratio <= 1.1
    assert math.isfinite(result.ingress_loss_pct) and result.ingress_loss_pct < 5
    assert result.counters_delta["send_failures"] == 0
    assert result.generator_cpu_percent < 10  # no live encoder (640x480 live: ~18 %)
    assert "(3 of them kernel sinks)" in format_report(result)
