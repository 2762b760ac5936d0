"""sfu.gcc: GCC-style send-side bandwidth estimation (draft-ietf-rmcat-gcc-02).

The end-to-end tests run a deterministic link simulator: a paced sender at
the estimator's rate, a bottleneck with a drop-tail queue, random loss and
propagation delay, a receiver that answers every 100 ms with real transport-cc
bytes (``sfu.twcc.build_feedback``), parsed and matched by ``sfu.twcc`` as the
SFU will. Times are ms unless a name says otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sfu.gcc import (
    BETA,
    LOSS_INCREASE,
    LOSS_MIN_PACKETS,
    MAX_BITRATE_BPS,
    MIN_BITRATE_BPS,
    OVERUSE_TIME_MS,
    PROBE_PACKET_SIZE,
    START_BITRATE_BPS,
    THRESHOLD_INITIAL_MS,
    THRESHOLD_MAX_MS,
    THRESHOLD_MIN_MS,
    AcknowledgedBitrate,
    AimdRateControl,
    BandwidthUsage,
    InterArrival,
    LossBasedControl,
    OveruseDetector,
    ProbeController,
    RateControlState,
    SendSideEstimator,
    SlidingLeastSquares,
    TrendlineFilter,
    least_squares_slope,
)
from sfu.subscriber_rtcp import read_subscriber_rtcp
from sfu.twcc import (
    REFERENCE_TIME_MOD,
    REFERENCE_TIME_TICK_US,
    PacketResult,
    TransportSequencer,
    build_feedback,
    build_feedback_packet,
    match_feedback,
    parse_feedback,
)

PACKET_SIZE = 1200
FEEDBACK_INTERVAL_MS = 100.0
ONE_WAY_MS = 25.0
# The receiver's clock: 10 s before its 24-bit reference time wraps, so every
# long simulation also crosses that wrap.
RECEIVER_CLOCK_OFFSET_US = REFERENCE_TIME_MOD * REFERENCE_TIME_TICK_US - 10_000_000
FIRST_SEQUENCE = 65_536 - 2_000  # and the 16-bit sequence wraps after 2000 packets


@dataclass
class Trace:
    """Estimate after each feedback: (sender time ms, bps)."""

    points: list[tuple[float, int]] = field(default_factory=list)
    sent: int = 0
    lost: int = 0
    dropped: int = 0
    probes: int = 0

    def first_time(self, after_ms: float, predicate: Callable[[int], bool]) -> float | None:
        for time_ms, estimate in self.points:
            if time_ms >= after_ms and predicate(estimate):
                return time_ms
        return None

    def between(self, start_ms: float, end_ms: float) -> list[int]:
        return [estimate for time_ms, estimate in self.points if start_ms <= time_ms < end_ms]


def simulate(
    capacity_bps: Callable[[float], float],
    duration_ms: float,
    *,
    loss: float = 0.0,
    buffer_ms: float = 300.0,
    seed: int = 1,
    estimator: SendSideEstimator | None = None,
) -> Trace:
    """Run sender -> bottleneck -> receiver -> transport-cc -> estimator, 1 ms ticks.

    The bottleneck serves packets FIFO at ``capacity_bps(t)``; a packet that
    would wait more than ``buffer_ms`` is dropped (drop-tail). Random loss is
    applied after the queue (a lossy last hop). Feedback travels back without
    queueing, ONE_WAY_MS later.
    """
    rng = random.Random(seed)
    estimator = estimator or SendSideEstimator()
    estimator.update_rtt(2 * ONE_WAY_MS)
    sequencer = TransportSequencer(first_sequence=FIRST_SEQUENCE)
    trace = Trace()
    link_free_ms = 0.0
    next_media_ms = 0.0
    probe_queue: list[tuple[float, int]] = []  # (send time, cluster id)
    arrivals: list[tuple[float, int]] = []  # (arrival ms, send index), arrival order
    reported_up_to = 0  # send index of the next packet the receiver must report
    seq_of_index: dict[int, int] = {}
    in_flight_feedback: list[tuple[float, bytes]] = []  # (delivery ms, RTCP packet)
    next_feedback_ms = FEEDBACK_INTERVAL_MS
    feedback_count = 0
    arrival_cursor = 0

    def send(send_ms: float, cluster: int) -> None:
        nonlocal link_free_ms
        index = trace.sent
        trace.sent += 1
        seq_of_index[index] = sequencer.next_sequence(round(send_ms * 1000), PACKET_SIZE, cluster)
        start = max(send_ms, link_free_ms)
        if start - send_ms > buffer_ms:
            trace.dropped += 1
            return
        link_free_ms = start + PACKET_SIZE * 8 * 1000.0 / capacity_bps(start)
        if rng.random() < loss:
            trace.lost += 1
            return
        arrivals.append((link_free_ms + ONE_WAY_MS, index))

    tick = 0
    while tick < duration_ms:
        now = float(tick)
        if not probe_queue:
            cluster = estimator.probe_request(now)
            if cluster is not None:
                trace.probes += 1
                interval = cluster.interval_us / 1000.0
                probe_queue = [
                    (now + k * interval, cluster.cluster_id) for k in range(cluster.packets)
                ]
                next_media_ms = max(next_media_ms, probe_queue[-1][0] + interval)
        while probe_queue and probe_queue[0][0] <= now:
            send(*probe_queue.pop(0))
        while next_media_ms <= now:
            send(next_media_ms, -1)
            next_media_ms += PACKET_SIZE * 8 * 1000.0 / estimator.estimate
        if now >= next_feedback_ms:
            next_feedback_ms += FEEDBACK_INTERVAL_MS
            newest = arrival_cursor
            while newest < len(arrivals) and arrivals[newest][0] <= now:
                newest += 1
            fresh = arrivals[arrival_cursor:newest]
            arrival_cursor = newest
            if fresh:
                last_index = max(index for _, index in fresh)
                by_index = {index: at for at, index in fresh}
                first_us = round(fresh[0][0] * 1000) + RECEIVER_CLOCK_OFFSET_US
                reference = first_us // REFERENCE_TIME_TICK_US
                base_us = reference * REFERENCE_TIME_TICK_US
                report: list[int | None] = []
                for index in range(reported_up_to, last_index + 1):
                    at = by_index.get(index)
                    report.append(
                        None
                        if at is None
                        else round(at * 1000) + RECEIVER_CLOCK_OFFSET_US - base_us
                    )
                fci = build_feedback(
                    seq_of_index[reported_up_to],
                    reference % REFERENCE_TIME_MOD,
                    feedback_count,
                    report,
                )
                feedback_count += 1
                reported_up_to = last_index + 1
                in_flight_feedback.append((now + ONE_WAY_MS, build_feedback_packet(1, 2, fci)))
        while in_flight_feedback and in_flight_feedback[0][0] <= now:
            _, packet = in_flight_feedback.pop(0)
            for fci in read_subscriber_rtcp(packet).transport_fcis:
                results = match_feedback(sequencer, parse_feedback(fci))
                trace.points.append((now, estimator.on_feedback(results, now)))
        tick += 1
    return trace


def step_capacity(*steps: tuple[float, float]) -> Callable[[float], float]:
    """Piecewise-constant capacity: (from ms, bps) steps, first one from 0."""

    def capacity(now_ms: float) -> float:
        current = steps[0][1]
        for start, bps in steps:
            if now_ms >= start:
                current = bps
        return current

    return capacity


# --- end-to-end: the acceptance criteria ----------------------------------------------


def test_capacity_step_down_and_up() -> None:
    """3 Mbps -> 600 kbps at 20 s -> 3 Mbps at 40 s, no random loss, 300 ms drop-tail buffer.

    Required: below 700 kbps within 2 s of the drop, above 2 Mbps within 15 s
    of the restore. Measured: 0.53 s and 1.3 s (the latter thanks to probing:
    with probes disabled, +8 %/s needs 17.9 s, see the next test).
    """
    trace = simulate(step_capacity((0, 3e6), (20_000, 6e5), (40_000, 3e6)), 60_000)
    assert max(trace.between(10_000, 20_000)) > 2_500_000  # it had found the 3 Mbps first
    dropped = trace.first_time(20_000, lambda bps: bps < 700_000)
    assert dropped is not None and dropped - 20_000 <= 2_000
    # While the link is 600 kbps the estimate stays near it, and well under 3 Mbps.
    low = trace.between(dropped + 2_000, 40_000)
    assert max(low) < 800_000 and min(low) > 400_000
    recovered = trace.first_time(40_000, lambda bps: bps > 2_000_000)
    assert recovered is not None and recovered - 40_000 <= 15_000
    assert min(trace.between(recovered + 1_000, 60_000)) > 2_000_000


def test_without_probing_recovery_is_the_aimd_slope(monkeypatch: pytest.MonkeyPatch) -> None:
    """Documents why probing exists: +8 %/s from ~0.55 Mbps reaches 2 Mbps only after ~17 s."""
    monkeypatch.setattr(ProbeController, "request", lambda *args, **kwargs: None)
    trace = simulate(step_capacity((0, 3e6), (20_000, 6e5), (40_000, 3e6)), 60_000)
    recovered = trace.first_time(40_000, lambda bps: bps > 2_000_000)
    assert recovered is not None and 15_000 < recovered - 40_000 < 20_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_five_percent_random_loss_stays_within_30_percent(seed: int) -> None:
    """2 Mbps link, 5 % random loss from t=0; assessed from 10 s (warm-up) to 40 s.

    Statistic: the minimum and the maximum of every estimate (one per
    feedback, every 100 ms) in the window must lie within 2 Mbps +-30 %.
    Measured over seeds 1-40: worst minimum 0.73 x, worst maximum 1.05 x
    capacity (the delay-based sawtooth: 0.85 x an acknowledged rate that is
    itself 5 % short; the loss bound holds in the 2-10 % band).
    """
    capacity = 2_000_000
    trace = simulate(step_capacity((0, capacity)), 40_000, loss=0.05, seed=seed)
    assert 0.04 < trace.lost / trace.sent < 0.06
    window = trace.between(10_000, 40_000)
    assert len(window) > 250
    assert min(window) >= 0.7 * capacity
    assert max(window) <= 1.3 * capacity


def test_heavy_loss_without_queueing_cuts_the_rate() -> None:
    """30 % random loss on a link that never queues: only the loss bound can act."""
    trace = simulate(step_capacity((0, 50e6)), 10_000, loss=0.30, seed=4)
    assert trace.between(9_000, 10_000)[-1] < 200_000


# --- trendline filter ---------------------------------------------------------------------


def test_least_squares_slope_of_a_line() -> None:
    points = [(x * 5.0, 3.0 + 0.25 * x * 5.0) for x in range(20)]
    assert least_squares_slope(points) == pytest.approx(0.25)


def test_least_squares_slope_degenerate() -> None:
    assert least_squares_slope([(1.0, 2.0)]) is None
    assert least_squares_slope([(1.0, 2.0), (1.0, 3.0)]) is None


@pytest.mark.parametrize("start_ms", [0.0, 3.6e6, 2.6e8], ids=["start", "1 h", "3 days"])
def test_sliding_slope_matches_the_slope_of_its_window(start_ms: float) -> None:
    """Running sums (added, subtracted, rebased) give the window's own least squares,
    however long the connection has lasted."""
    rng = random.Random(7)
    sliding = SlidingLeastSquares(20)
    window: list[tuple[float, float]] = []
    x, y = start_ms, 50.0
    for i in range(1000):
        x += rng.uniform(0.0, 40.0) if i % 97 else 0.0
        y += rng.gauss(0.0, 3.0)
        sliding.add(x, y)
        window = [*window, (x, y)][-20:]
        expected = least_squares_slope(window)
        if expected is None:
            assert sliding.slope() is None
        else:
            assert sliding.slope() == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert sliding.full


def test_sliding_slope_is_rebased_near_its_window() -> None:
    """After a jump of 10^9 ms from the first point, sums kept around that point would
    lose the slope to rounding; rebased around the window's oldest point they do not."""
    rng = random.Random(3)
    sliding = SlidingLeastSquares(20)
    sliding.add(0.0, 0.0)
    window = [(0.0, 0.0)]
    for i in range(1, 200):
        point = (1e9 + 25.0 * i, rng.gauss(0.0, 3.0))
        sliding.add(*point)
        window = [*window, point][-20:]
        if i > 40:
            assert sliding.slope() == pytest.approx(least_squares_slope(window), rel=1e-6)


def test_sliding_slope_degenerate() -> None:
    sliding = SlidingLeastSquares(3)
    assert sliding.slope() is None
    sliding.add(1.0, 2.0)
    assert sliding.slope() is None and not sliding.full
    for y in (3.0, 4.0, 5.0):  # x never varies
        sliding.add(1.0, y)
    assert sliding.full and sliding.slope() is None


def test_trendline_slope_on_a_synthetic_delay_ramp() -> None:
    """Groups 5 ms apart, one-way delay growing 0.5 ms per group: slope 0.1 ms/ms."""
    trendline = TrendlineFilter()
    for i in range(19):
        assert trendline.update(0.5, 5.0 * i) == 0.0  # window not full yet
    for i in range(19, 200):
        slope = trendline.update(0.5, 5.0 * i)
    assert slope == pytest.approx(0.1, rel=1e-3)


def test_trendline_flat_delay_has_zero_slope() -> None:
    trendline = TrendlineFilter()
    for i in range(100):
        slope = trendline.update(1.0 if i % 2 else -1.0, 5.0 * i)
    assert abs(slope) < 0.01


# --- inter-arrival grouping ---------------------------------------------------------------


def test_packets_sent_within_5_ms_form_one_group() -> None:
    groups = InterArrival()
    assert groups.add(0.0, 100.0) is None
    assert groups.add(4.0, 104.0) is None  # same group
    assert groups.add(10.0, 111.0) is None  # second group opens, first has no predecessor
    assert groups.add(12.0, 113.0) is None
    delta = groups.add(20.0, 125.0)  # third group: closes the second
    assert delta is not None
    assert delta.send_delta_ms == pytest.approx(12.0 - 4.0)
    assert delta.arrival_delta_ms == pytest.approx(113.0 - 104.0)
    assert delta.arrival_ms == 113.0


def test_a_burst_delivered_together_joins_the_group() -> None:
    """Sent 10 ms apart but arriving 1 ms apart after a queue: one group, not two."""
    groups = InterArrival()
    groups.add(0.0, 100.0)
    assert groups.add(10.0, 101.0) is None
    assert groups.add(30.0, 130.0) is None
    delta = groups.add(50.0, 150.0)
    assert delta is not None
    assert delta.send_delta_ms == pytest.approx(30.0 - 10.0)
    assert delta.arrival_delta_ms == pytest.approx(130.0 - 101.0)


def test_reordered_packets_are_ignored_and_clock_jumps_reset() -> None:
    groups = InterArrival()
    groups.add(100.0, 1000.0)
    assert groups.add(50.0, 1001.0) is None  # sent before the current group
    groups.add(110.0, 1010.0)
    assert groups.add(120.0, 1020.0) is not None
    assert groups.add(130.0, 9000.0) is not None  # closes the 1020 group normally
    assert groups.add(140.0, 9010.0) is None  # the 9000 group: clock jumped 8 s, reset
    assert groups.add(150.0, 9020.0) is None  # starting over: no predecessor yet
    assert groups.add(160.0, 9030.0) is not None


# --- over-use detector --------------------------------------------------------------------


def test_detector_needs_sustained_overuse() -> None:
    detector = OveruseDetector()
    slope = 0.5  # scaled: 60 * 0.5 * 4 = 120 ms > threshold
    assert detector.detect(slope, 60, 5.0, 0.0) is BandwidthUsage.NORMAL  # 2.5 ms over
    assert detector.detect(slope, 60, 5.0, 5.0) is BandwidthUsage.NORMAL  # 7.5 ms over
    assert detector.detect(slope, 60, 5.0, 10.0) is BandwidthUsage.OVERUSING  # 12.5 > 10
    assert OVERUSE_TIME_MS == 10.0


def test_detector_ignores_a_falling_trend_above_the_threshold() -> None:
    detector = OveruseDetector()
    for i, slope in enumerate([0.5, 0.4, 0.3, 0.2]):
        assert detector.detect(slope, 60, 5.0, 5.0 * i) is BandwidthUsage.NORMAL


def test_detector_underuse_and_back_to_normal() -> None:
    detector = OveruseDetector()
    assert detector.detect(-0.5, 60, 5.0, 0.0) is BandwidthUsage.UNDERUSING
    assert detector.detect(0.0, 60, 5.0, 5.0) is BandwidthUsage.NORMAL


def test_detector_scales_the_slope_by_the_number_of_deltas() -> None:
    detector = OveruseDetector()
    # 0.02 * 60 * 4 = 4.8 ms < 12.5, while 0.02 * 1000 * 4 would be 80: capped at 60 deltas.
    for i in range(5):
        assert detector.detect(0.02, 1000, 5.0, 5.0 * i) is BandwidthUsage.NORMAL


def test_threshold_adapts_up_slowly_down_fast_and_is_clamped() -> None:
    detector = OveruseDetector()
    assert detector.threshold == THRESHOLD_INITIAL_MS
    detector.detect(0.0, 60, 5.0, 0.0)
    detector.detect(0.0, 60, 5.0, 100.0)  # |trend| 0 < gamma: k_down over 100 ms
    assert detector.threshold == pytest.approx(max(12.5 - 0.039 * 12.5 * 100, THRESHOLD_MIN_MS))
    assert detector.threshold == THRESHOLD_MIN_MS
    up = OveruseDetector()
    up.detect(0.0, 60, 5.0, 0.0)
    trend_slope = 20.0 / (60 * 4)  # scaled trend 20 ms: within gamma + 15, so it adapts
    up.detect(trend_slope, 60, 5.0, 100.0)
    assert up.threshold == pytest.approx(12.5 + 0.0087 * (20.0 - 12.5) * 100)
    far = OveruseDetector()
    far.detect(0.0, 60, 5.0, 0.0)
    far.detect(1.0, 60, 5.0, 100.0)  # 240 ms: an excursion, gamma does not follow
    assert far.threshold == THRESHOLD_INITIAL_MS
    for i in range(2, 2000):  # a trend always 10 ms above gamma drags it up to the clamp
        far.detect((far.threshold + 10.0) / (60 * 4), 60, 5.0, 100.0 * i)
    assert far.threshold == THRESHOLD_MAX_MS


# --- AIMD rate control --------------------------------------------------------------------


def test_aimd_decreases_to_beta_times_the_acknowledged_rate() -> None:
    aimd = AimdRateControl(start_bps=3_000_000)
    rate = aimd.update(BandwidthUsage.OVERUSING, 2_000_000, 1_000.0)
    assert BETA == 0.85
    assert rate == pytest.approx(0.85 * 2_000_000)
    assert aimd.state is RateControlState.HOLD


def test_aimd_decrease_never_raises_and_waits_one_rtt() -> None:
    aimd = AimdRateControl(start_bps=1_000_000)
    aimd.rtt_ms = 100.0
    assert aimd.update(BandwidthUsage.OVERUSING, 2_000_000, 0.0) == 1_000_000
    aimd.update(BandwidthUsage.OVERUSING, 900_000, 10.0)
    assert aimd.bitrate_bps == 1_000_000  # 10 ms after the last change: too soon
    aimd.update(BandwidthUsage.OVERUSING, 900_000, 150.0)
    assert aimd.bitrate_bps == pytest.approx(0.85 * 900_000)


def test_aimd_holds_on_underuse() -> None:
    aimd = AimdRateControl(start_bps=1_000_000)
    aimd.update(BandwidthUsage.NORMAL, 1_000_000, 0.0)
    held = aimd.update(BandwidthUsage.UNDERUSING, 1_000_000, 500.0)
    assert aimd.update(BandwidthUsage.UNDERUSING, 1_000_000, 1_000.0) == held
    assert aimd.state is RateControlState.HOLD


def test_aimd_multiplicative_increase_far_from_the_last_congestion() -> None:
    aimd = AimdRateControl(start_bps=1_000_000)
    aimd.update(BandwidthUsage.NORMAL, 1_000_000, 0.0)
    for step in range(1, 11):
        aimd.update(BandwidthUsage.NORMAL, 1_000_000, 100.0 * step)
    assert aimd.bitrate_bps == pytest.approx(1_000_000 * 1.08, rel=0.002)


def test_aimd_additive_increase_near_the_last_congestion() -> None:
    aimd = AimdRateControl(start_bps=1_000_000)
    aimd.rtt_ms = 100.0
    aimd.update(BandwidthUsage.OVERUSING, 1_000_000, 0.0)  # congestion point 1 Mbps
    start = aimd.bitrate_bps
    aimd.update(BandwidthUsage.NORMAL, 900_000, 1_000.0)
    aimd.update(BandwidthUsage.NORMAL, 900_000, 2_000.0)
    # 850 kbps / 30 fps = 28.3 kbit frames in 3 packets of 9.4 kbit; response 200 ms.
    assert aimd.bitrate_bps - start == pytest.approx(850_000 / 30 / 3 / 0.2, rel=0.01)


def test_aimd_does_not_run_away_from_the_acknowledged_rate() -> None:
    aimd = AimdRateControl(start_bps=1_000_000)
    aimd.update(BandwidthUsage.NORMAL, 200_000, 0.0)
    for step in range(1, 50):
        aimd.update(BandwidthUsage.NORMAL, 200_000, 1_000.0 * step)
    assert aimd.bitrate_bps == 1_000_000  # app-limited at 200 kbps: no growth, no fall


# --- loss-based control -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lost", "factor"),
    [(0, LOSS_INCREASE), (1, LOSS_INCREASE), (2, 1.0), (10, 1.0), (30, 1 - 0.5 * 0.3)],
)
def test_loss_bands(lost: int, factor: float) -> None:
    """Per 100-packet report, unsmoothed: <2 % +5 %, 2-10 % hold, >10 % x(1 - loss/2)."""
    control = LossBasedControl(max_bps=MAX_BITRATE_BPS, smoothing_packets=0)
    control.bound_bps = 1_000_000
    assert control.update(100, lost, 1_000_000, 0.0) == pytest.approx(1_000_000 * factor)


def test_loss_cut_starts_from_the_estimate_and_is_rate_limited() -> None:
    control = LossBasedControl(smoothing_packets=0)
    assert control.update(100, 20, 800_000, 0.0) == pytest.approx(800_000 * 0.9)
    assert control.update(100, 20, 700_000, 100.0) == pytest.approx(800_000 * 0.9)
    assert control.update(100, 20, 700_000, 400.0) == pytest.approx(700_000 * 0.9)


def test_loss_waits_for_enough_packets() -> None:
    control = LossBasedControl(smoothing_packets=0)
    control.bound_bps = 1_000_000
    assert LOSS_MIN_PACKETS == 20
    assert control.update(10, 5, 1_000_000, 0.0) == 1_000_000
    assert control.update(10, 0, 1_000_000, 100.0) == pytest.approx(1_000_000 * (1 - 0.5 * 0.25))


def test_smoothed_loss_ignores_one_noisy_report_but_follows_a_step() -> None:
    control = LossBasedControl()
    for i in range(20):
        control.update(20, 1, 1_000_000, 100.0 * i)  # 5 %
    assert control.update(20, 3, 1_000_000, 2_000.0) == MAX_BITRATE_BPS  # one 15 % batch
    for i in range(21, 40):
        bound = control.update(20, 6, 1_000_000, 100.0 * i)  # 30 % from now on
    assert bound < 0.8 * 1_000_000


# --- acknowledged bitrate, probing, estimator ---------------------------------------------


def test_acknowledged_bitrate() -> None:
    acked = AcknowledgedBitrate()
    assert acked.bitrate_bps() is None
    for i in range(100):  # 1200 B every 9.6 ms = 1 Mbps
        acked.add(9.6 * i, 1200)
    assert acked.bitrate_bps() == pytest.approx(1_000_000, rel=0.01)


def _probe_results(
    cluster: int, count: int, send_gap_us: int, arrival_gap_us: int
) -> list[PacketResult]:
    return [
        PacketResult(i, i * send_gap_us, 50_000 + i * arrival_gap_us, PROBE_PACKET_SIZE, cluster)
        for i in range(count)
    ]


def test_probe_controller_initial_then_further_probe() -> None:
    probes = ProbeController()
    first = probes.request(1_000_000, 0.0, increasing=True)
    assert first is not None and first.bitrate_bps == 3_000_000 and first.packets == 5
    assert probes.request(1_000_000, 10.0, increasing=True) is None  # one at a time
    gap = first.interval_us
    rate = probes.on_results(_probe_results(first.cluster_id, first.packets, gap, gap))
    assert rate is not None and rate == pytest.approx(3_000_000, rel=0.01)
    further = probes.request(rate, 200.0, increasing=True)
    assert further is not None and further.bitrate_bps == pytest.approx(6_000_000, rel=0.01)
    # The link only carries half of it: saturated, 95 % of the receive rate.
    rate = probes.on_results(_probe_results(further.cluster_id, further.packets, gap // 2, gap))
    assert rate is not None and rate == pytest.approx(0.95 * 3_000_000, rel=0.01)
    assert probes.request(rate, 400.0, increasing=True) is None  # no further probe
    periodic = probes.request(2_000_000, 5_200.0, increasing=True)
    assert periodic is not None and periodic.bitrate_bps == 4_000_000
    assert probes.request(2_000_000, 5_300.0, increasing=True) is None
    assert probes.request(2_000_000, 11_000.0, increasing=False) is None  # timed out, not calm


def test_estimator_validates_and_clamps() -> None:
    with pytest.raises(ValueError):
        SendSideEstimator(start_bps=10, min_bps=100)
    estimator = SendSideEstimator()
    assert estimator.estimate == START_BITRATE_BPS
    assert estimator.on_feedback([], 0.0) == START_BITRATE_BPS
    lost = [PacketResult(i, i * 1000, None, 1200) for i in range(200)]
    for step in range(100):
        estimator.on_feedback(lost, 100.0 * step)
    assert estimator.estimate == MIN_BITRATE_BPS
