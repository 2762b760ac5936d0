"""Send-side bandwidth estimation in the style of Google Congestion Control.

draft-ietf-rmcat-gcc-02, fed by transport-cc (``sfu.twcc``): once per
feedback report (every 50-100 ms) the estimator gets, for each packet sent,
its send time, arrival time (or loss) and size, and returns the rate the
subscriber's link should carry.

- Delay-based (§5): packets sent within 5 ms form a group; the change of the
  one-way delay between groups is accumulated, smoothed and fitted with a
  least-squares line over the last 20 groups (the trendline filter, which
  replaced the draft's Kalman filter in libwebrtc); the slope, scaled, is
  compared with an adaptive threshold to say overusing / normal / underusing;
  an AIMD controller turns that into a rate: 0.85 x the acknowledged rate on
  overuse, +8 %/s far from the last congestion point, about one packet per
  response time near it, unchanged on underuse.
- Loss-based (§6): over each report (at least 20 packets), < 2 % lost raises
  the bound 5 %, 2-10 % holds it, > 10 % cuts it by half the loss fraction.
  The bound only ever limits after heavy loss: random Wi-Fi loss in the
  2-10 % band must not freeze the rate wherever it happened to be (Chrome's
  loss controller does), so the delay-based part keeps tracking the queue.
- Probing: a short cluster at twice the estimate every few seconds, and
  further doubling while probes succeed, finds capacity that comes back far
  faster than +8 %/s would (0.6 -> 2 Mbps takes ~16 s at 8 %/s), and is the
  only way to learn more than an app-limited sender actually sends.

Final estimate = min(delay-based, loss-based), clamped to [min, max].
Pure module: times are passed in (ms, floats) and nothing here does I/O.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from sfu.twcc import NO_PROBE, PacketResult

START_BITRATE_BPS = 1_000_000
MIN_BITRATE_BPS = 50_000
MAX_BITRATE_BPS = 10_000_000

# §5.2 pre-filtering: packets sent within a burst form one group.
BURST_TIME_MS = 5.0
BURST_ARRIVAL_MS = 5.0  # arriving this close, with shrinking delay, still the same burst
MAX_BURST_DURATION_MS = 100.0
ARRIVAL_JUMP_RESET_MS = 3000.0  # receiver clock jumped: start over
REORDERED_GROUPS_RESET = 3

# Trendline filter (libwebrtc's replacement of the §5.3 Kalman filter).
TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_THRESHOLD_GAIN = 4.0
TRENDLINE_DELTA_CAP = 60  # the slope is scaled by min(deltas seen, this)
TRENDLINE_DELTA_COUNT_MAX = 1000

# §5.4 over-use detector with adaptive threshold (gamma).
THRESHOLD_INITIAL_MS = 12.5
THRESHOLD_MIN_MS = 6.0
THRESHOLD_MAX_MS = 600.0
THRESHOLD_K_UP = 0.0087
THRESHOLD_K_DOWN = 0.039
THRESHOLD_MAX_OFFSET_MS = 15.0  # bigger excursions do not move the threshold
THRESHOLD_MAX_STEP_MS = 100.0
OVERUSE_TIME_MS = 10.0

# §5.5 rate control (AIMD).
BETA = 0.85
MULTIPLICATIVE_INCREASE_PER_S = 1.08
MIN_MULTIPLICATIVE_INCREASE_BPS = 1_000
MIN_ADDITIVE_INCREASE_BPS_PER_S = 4_000
ASSUMED_FRAME_RATE = 30.0
ASSUMED_PACKET_BITS = 1200 * 8
RESPONSE_TIME_EXTRA_MS = 100.0
DEFAULT_RTT_MS = 200.0
DECREASE_INTERVAL_MIN_MS = 10.0
DECREASE_INTERVAL_MAX_MS = 200.0
THROUGHPUT_HEADROOM = 1.5  # never raise the rate beyond this x what is acknowledged
THROUGHPUT_HEADROOM_BPS = 10_000
LINK_CAPACITY_SMOOTHING = 0.05
LINK_CAPACITY_VAR_MIN = 0.4
LINK_CAPACITY_VAR_MAX = 2.5
LINK_CAPACITY_SIGMAS = 3.0
ACK_WINDOW_MS = 500.0  # §5.5: receive rate over the last 0.5-1 s

# §6 loss-based control.
LOSS_LOW = 0.02
LOSS_HIGH = 0.10
LOSS_INCREASE = 1.05
LOSS_MIN_PACKETS = 20  # fewer packets say too little about the loss rate
LOSS_SMOOTHING_PACKETS = 200  # exponential smoothing weight: packets in the batch / this
LOSS_DECREASE_INTERVAL_MS = 300.0  # let a cut take effect before cutting again

# Probing.
PROBE_INITIAL_FACTOR = 3.0
PROBE_PERIODIC_FACTOR = 2.0
PROBE_FURTHER_FACTOR = 2.0
PROBE_INTERVAL_MS = 5000.0
PROBE_FURTHER_RATIO = 0.7  # a probe reaching this share of its rate earns the next one
PROBE_TIMEOUT_MS = 1000.0
PROBE_DURATION_MS = 15.0
PROBE_MIN_PACKETS = 5
PROBE_PACKET_SIZE = 1200
PROBE_MIN_RECEIVED_RATIO = 0.8
PROBE_SATURATED_RATIO = 0.9  # received slower than this x sent: the link is the limit
PROBE_SATURATED_SHARE = 0.95


class BandwidthUsage(enum.Enum):
    NORMAL = "normal"
    OVERUSING = "overusing"
    UNDERUSING = "underusing"


class RateControlState(enum.Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


@dataclass(frozen=True, slots=True)
class GroupDelta:
    """Between two consecutive packet groups: send spacing, arrival spacing (ms)."""

    send_delta_ms: float
    arrival_delta_ms: float
    arrival_ms: float  # arrival of the later group's last packet


class InterArrival:
    """Groups packets by send time (5 ms bursts) and emits deltas between groups (§5.2)."""

    __slots__ = (
        "_first_arrival",
        "_first_send",
        "_last_arrival",
        "_last_send",
        "_prev_arrival",
        "_prev_send",
        "_reordered",
    )

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._first_send: float | None = None
        self._first_arrival = 0.0
        self._last_send = 0.0
        self._last_arrival = 0.0
        self._prev_send: float | None = None
        self._prev_arrival = 0.0
        self._reordered = 0

    def add(self, send_ms: float, arrival_ms: float) -> GroupDelta | None:
        """Add a received packet (in arrival order); returns a delta when a group closes."""
        if self._first_send is None:
            self._start_group(send_ms, arrival_ms)
            return None
        if send_ms < self._first_send:
            return None  # sent before the current group: reordered, ignore
        if self._in_current_group(send_ms, arrival_ms):
            self._last_send = max(self._last_send, send_ms)
            self._last_arrival = arrival_ms
            return None
        delta = None
        if self._prev_send is not None:
            send_delta = self._last_send - self._prev_send
            arrival_delta = self._last_arrival - self._prev_arrival
            if (
                arrival_delta - send_delta > ARRIVAL_JUMP_RESET_MS
                or arrival_delta < -ARRIVAL_JUMP_RESET_MS
            ):
                self._reset()
                self._start_group(send_ms, arrival_ms)
                return None
            if arrival_delta < 0:
                self._reordered += 1
                if self._reordered >= REORDERED_GROUPS_RESET:
                    self._reset()
                    self._start_group(send_ms, arrival_ms)
                    return None
            else:
                self._reordered = 0
                delta = GroupDelta(send_delta, arrival_delta, self._last_arrival)
        self._prev_send = self._last_send
        self._prev_arrival = self._last_arrival
        self._start_group(send_ms, arrival_ms)
        return delta

    def _start_group(self, send_ms: float, arrival_ms: float) -> None:
        self._first_send = self._last_send = send_ms
        self._first_arrival = self._last_arrival = arrival_ms

    def _in_current_group(self, send_ms: float, arrival_ms: float) -> bool:
        assert self._first_send is not None
        if send_ms - self._first_send <= BURST_TIME_MS:
            return True
        # A burst queued somewhere and delivered together belongs to one group.
        arrival_gap = arrival_ms - self._last_arrival
        return (
            arrival_gap <= BURST_ARRIVAL_MS
            and arrival_gap - (send_ms - self._last_send) < 0
            and arrival_ms - self._first_arrival < MAX_BURST_DURATION_MS
        )


class SlidingLeastSquares:
    """The least-squares slope of the last ``window`` points, in constant time per point.

    The trendline asks for it after every packet group of every subscriber
    that sends transport-cc feedback (about 50 groups a second each), so the
    sums are kept running: each new point is added and the one leaving the
    window subtracted. Coordinates are taken relative to an origin inside the
    window, and every ``window`` points the sums are recomputed from the
    points themselves around the oldest one, so neither the size of the
    coordinates (an hour of arrival times) nor the rounding of the
    subtractions can build up.
    """

    __slots__ = ("_points", "_since_rebase", "_sum_x", "_sum_xx", "_sum_xy", "_sum_y",
                 "_x0", "_y0")

    def __init__(self, window: int) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=window)
        self._x0 = self._y0 = 0.0
        self._sum_x = self._sum_y = self._sum_xx = self._sum_xy = 0.0
        self._since_rebase = 0

    @property
    def full(self) -> bool:
        return len(self._points) == self._points.maxlen

    def add(self, x: float, y: float) -> None:
        points = self._points
        if self.full:
            old_x, old_y = points[0]
            old_x -= self._x0
            old_y -= self._y0
            self._sum_x -= old_x
            self._sum_y -= old_y
            self._sum_xx -= old_x * old_x
            self._sum_xy -= old_x * old_y
        points.append((x, y))
        self._since_rebase += 1
        if len(points) == 1 or self._since_rebase >= len(points):
            self._rebase()
            return
        x -= self._x0
        y -= self._y0
        self._sum_x += x
        self._sum_y += y
        self._sum_xx += x * x
        self._sum_xy += x * y

    def slope(self) -> float | None:
        """None with fewer than two points, or when x does not vary."""
        return _slope_of_sums(len(self._points), self._sum_x, self._sum_y, self._sum_xx,
                              self._sum_xy)

    def _rebase(self) -> None:
        self._x0, self._y0 = self._points[0]
        _, self._sum_x, self._sum_y, self._sum_xx, self._sum_xy = _centered_sums(self._points)
        self._since_rebase = 0


class TrendlineFilter:
    """Least-squares slope of the smoothed accumulated delay over the last groups.

    A positive slope means the queue is growing: the link carries less than is
    sent. The slope is dimensionless (ms of delay per ms of time).
    """

    __slots__ = (
        "_accumulated",
        "_first_arrival",
        "_points",
        "_smoothed",
        "_smoothing",
        "deltas",
        "slope",
    )

    def __init__(self, window: int = TRENDLINE_WINDOW, smoothing: float = TRENDLINE_SMOOTHING):
        self._points = SlidingLeastSquares(window)
        self._smoothing = smoothing
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._first_arrival: float | None = None
        self.deltas = 0
        self.slope = 0.0

    def update(self, delay_delta_ms: float, arrival_ms: float) -> float:
        if self._first_arrival is None:
            self._first_arrival = arrival_ms
        self.deltas = min(self.deltas + 1, TRENDLINE_DELTA_COUNT_MAX)
        self._accumulated += delay_delta_ms
        self._smoothed = (
            self._smoothing * self._smoothed + (1.0 - self._smoothing) * self._accumulated
        )
        points = self._points
        points.add(arrival_ms - self._first_arrival, self._smoothed)
        if points.full:
            slope = points.slope()
            if slope is not None:
                self.slope = slope
        return self.slope


def least_squares_slope(points: Iterable[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through (x, y) points; None if x does not vary.

    ``SlidingLeastSquares`` gives the same slope for a moving window.
    """
    return _slope_of_sums(*_centered_sums(points))


def _centered_sums(points: Iterable[tuple[float, float]]
                   ) -> tuple[int, float, float, float, float]:
    """count, Σx, Σy, Σx², Σxy with x and y taken relative to the first point: the slope
    does not change, and the sums stay small however large the coordinates are."""
    count = 0
    sum_x = sum_y = sum_xx = sum_xy = 0.0
    x0 = y0 = 0.0
    for x, y in points:
        if not count:
            x0, y0 = x, y
        x -= x0
        y -= y0
        count += 1
        sum_x += x
        sum_y += y
        sum_xx += x * x
        sum_xy += x * y
    return count, sum_x, sum_y, sum_xx, sum_xy


def _slope_of_sums(count: int, sum_x: float, sum_y: float, sum_xx: float,
                   sum_xy: float) -> float | None:
    if count < 2:
        return None
    denominator = count * sum_xx - sum_x * sum_x
    if denominator <= 0.0:
        return None
    return (count * sum_xy - sum_x * sum_y) / denominator


class OveruseDetector:
    """Compares the scaled trend with an adaptive threshold gamma (§5.4).

    Gamma follows |trend| slowly upwards (k_up) and quickly downwards (k_down)
    so that a flow competing with TCP's standing queue is not starved, while a
    sudden excursion far above gamma does not drag it along.
    """

    __slots__ = (
        "_last_update",
        "_overuse_count",
        "_overuse_time",
        "_prev_slope",
        "state",
        "threshold",
    )

    def __init__(self) -> None:
        self.threshold = THRESHOLD_INITIAL_MS
        self.state = BandwidthUsage.NORMAL
        self._overuse_time: float | None = None
        self._overuse_count = 0
        self._prev_slope = 0.0
        self._last_update: float | None = None

    def detect(
        self, slope: float, deltas: int, send_delta_ms: float, now_ms: float
    ) -> BandwidthUsage:
        trend = min(deltas, TRENDLINE_DELTA_CAP) * slope * TRENDLINE_THRESHOLD_GAIN
        if trend > self.threshold:
            if self._overuse_time is None:
                self._overuse_time = send_delta_ms / 2.0
            else:
                self._overuse_time += send_delta_ms
            self._overuse_count += 1
            if (
                self._overuse_time > OVERUSE_TIME_MS
                and self._overuse_count > 1
                and slope >= self._prev_slope
            ):
                self._overuse_time = 0.0
                self._overuse_count = 0
                self.state = BandwidthUsage.OVERUSING
        elif trend < -self.threshold:
            self._overuse_time = None
            self._overuse_count = 0
            self.state = BandwidthUsage.UNDERUSING
        else:
            self._overuse_time = None
            self._overuse_count = 0
            self.state = BandwidthUsage.NORMAL
        self._prev_slope = slope
        self._adapt_threshold(trend, now_ms)
        return self.state

    def _adapt_threshold(self, trend: float, now_ms: float) -> None:
        if self._last_update is None:
            self._last_update = now_ms
        magnitude = abs(trend)
        if magnitude > self.threshold + THRESHOLD_MAX_OFFSET_MS:
            self._last_update = now_ms
            return
        gain = THRESHOLD_K_DOWN if magnitude < self.threshold else THRESHOLD_K_UP
        step = min(max(now_ms - self._last_update, 0.0), THRESHOLD_MAX_STEP_MS)
        self.threshold += gain * (magnitude - self.threshold) * step
        self.threshold = min(max(self.threshold, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)
        self._last_update = now_ms


class AcknowledgedBitrate:
    """Receive rate of the acknowledged packets over the last 500 ms of arrivals."""

    __slots__ = ("_bytes", "_packets")

    def __init__(self) -> None:
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrival_ms: float, size: int) -> None:
        self._packets.append((arrival_ms, size))
        self._bytes += size
        while arrival_ms - self._packets[0][0] > ACK_WINDOW_MS:
            self._bytes -= self._packets.popleft()[1]

    def bitrate_bps(self) -> float | None:
        """None until the window holds half a window's worth of arrivals."""
        if len(self._packets) < 2:
            return None
        first_arrival, first_size = self._packets[0]
        span = self._packets[-1][0] - first_arrival
        if span < ACK_WINDOW_MS / 2:
            return None
        return (self._bytes - first_size) * 8000.0 / span


class LinkCapacity:
    """Running mean and spread of the acknowledged rate at past overuses (kbps).

    Near that point the AIMD controller increases additively; far from it
    (or once it is clearly stale) multiplicatively.
    """

    __slots__ = ("_variance", "estimate_kbps")

    def __init__(self) -> None:
        self.estimate_kbps: float | None = None
        self._variance = LINK_CAPACITY_VAR_MIN

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, acked_bps: float) -> None:
        sample = acked_bps / 1000.0
        if self.estimate_kbps is None:
            self.estimate_kbps = sample
        else:
            self.estimate_kbps += LINK_CAPACITY_SMOOTHING * (sample - self.estimate_kbps)
        error = self.estimate_kbps - sample
        normaliser = max(self.estimate_kbps, 1.0)
        self._variance += LINK_CAPACITY_SMOOTHING * (error * error / normaliser - self._variance)
        self._variance = min(max(self._variance, LINK_CAPACITY_VAR_MIN), LINK_CAPACITY_VAR_MAX)

    def _deviation_kbps(self) -> float:
        assert self.estimate_kbps is not None
        return math.sqrt(self._variance * self.estimate_kbps)

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + LINK_CAPACITY_SIGMAS * self._deviation_kbps()) * 1000.0

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return (self.estimate_kbps - LINK_CAPACITY_SIGMAS * self._deviation_kbps()) * 1000.0


class AimdRateControl:
    """§5.5: additive-increase / multiplicative-decrease driven by the detector state."""

    __slots__ = (
        "_last_change",
        "_last_decrease",
        "bitrate_bps",
        "link",
        "max_bps",
        "min_bps",
        "rtt_ms",
        "state",
    )

    def __init__(
        self,
        start_bps: float = START_BITRATE_BPS,
        min_bps: float = MIN_BITRATE_BPS,
        max_bps: float = MAX_BITRATE_BPS,
    ) -> None:
        self.bitrate_bps = float(start_bps)
        self.min_bps = float(min_bps)
        self.max_bps = float(max_bps)
        self.rtt_ms = DEFAULT_RTT_MS
        self.state = RateControlState.INCREASE
        self.link = LinkCapacity()
        self._last_change: float | None = None
        self._last_decrease: float | None = None

    def set_estimate(self, bitrate_bps: float, now_ms: float) -> None:
        """Jump to a measured rate (a successful probe)."""
        self.bitrate_bps = min(max(bitrate_bps, self.min_bps), self.max_bps)
        self._last_change = now_ms

    def can_decrease(self, acked_bps: float | None, now_ms: float) -> bool:
        """At most one cut per round trip, unless the acknowledged rate collapsed."""
        if self._last_change is None or self._last_decrease is None:
            return True
        interval = min(max(self.rtt_ms, DECREASE_INTERVAL_MIN_MS), DECREASE_INTERVAL_MAX_MS)
        if now_ms - self._last_change >= interval:
            return True
        return acked_bps is not None and acked_bps < 0.5 * self.bitrate_bps

    def update(self, usage: BandwidthUsage, acked_bps: float | None, now_ms: float) -> float:
        if usage is BandwidthUsage.OVERUSING:
            if self.can_decrease(acked_bps, now_ms):
                self.state = RateControlState.DECREASE
        elif usage is BandwidthUsage.UNDERUSING:
            self.state = RateControlState.HOLD
        elif self.state is not RateControlState.INCREASE:
            self.state = RateControlState.INCREASE
            self._last_change = now_ms

        if self.state is RateControlState.INCREASE:
            self._increase(acked_bps, now_ms)
        elif self.state is RateControlState.DECREASE:
            self._decrease(acked_bps, now_ms)
            self.state = RateControlState.HOLD  # let the queue drain before rising again
        self.bitrate_bps = min(max(self.bitrate_bps, self.min_bps), self.max_bps)
        return self.bitrate_bps

    def _increase(self, acked_bps: float | None, now_ms: float) -> None:
        if acked_bps is not None and acked_bps > self.link.upper_bps():
            self.link.reset()  # the old congestion point is gone
        elapsed_ms = 0.0 if self._last_change is None else max(now_ms - self._last_change, 0.0)
        if self.link.estimate_kbps is not None:
            increase = self._additive_rate_bps_per_s() * elapsed_ms / 1000.0
        else:
            factor = MULTIPLICATIVE_INCREASE_PER_S ** min(elapsed_ms / 1000.0, 1.0)
            increase = max(self.bitrate_bps * (factor - 1.0), MIN_MULTIPLICATIVE_INCREASE_BPS)
        new_bitrate = self.bitrate_bps + increase
        if acked_bps is not None:
            limit = THROUGHPUT_HEADROOM * acked_bps + THROUGHPUT_HEADROOM_BPS
            new_bitrate = max(min(new_bitrate, limit), min(self.bitrate_bps, new_bitrate))
        self.bitrate_bps = new_bitrate
        self._last_change = now_ms

    def _additive_rate_bps_per_s(self) -> float:
        """About one average packet per response time (frame-sized bursts at 30 fps)."""
        frame_bits = self.bitrate_bps / ASSUMED_FRAME_RATE
        packets_per_frame = max(math.ceil(frame_bits / ASSUMED_PACKET_BITS), 1)
        packet_bits = frame_bits / packets_per_frame
        response_s = (self.rtt_ms + RESPONSE_TIME_EXTRA_MS) / 1000.0
        return max(packet_bits / response_s, MIN_ADDITIVE_INCREASE_BPS_PER_S)

    def _decrease(self, acked_bps: float | None, now_ms: float) -> None:
        if acked_bps is None:
            new_bitrate = BETA * self.bitrate_bps
        else:
            new_bitrate = BETA * acked_bps
            if new_bitrate > self.bitrate_bps and self.link.estimate_kbps is not None:
                new_bitrate = BETA * self.link.estimate_kbps * 1000.0
            if acked_bps < self.link.lower_bps():
                self.link.reset()
            self.link.on_overuse(acked_bps)
        self.bitrate_bps = min(self.bitrate_bps, new_bitrate)
        self._last_change = now_ms
        self._last_decrease = now_ms


class LossBasedControl:
    """§6: a bound that falls on heavy loss and relaxes when loss is low.

    Bands apply to each report's loss fraction (reports batched to at least
    20 packets): < 2 % relaxes the bound, 2-10 % holds it. A cut needs, as
    well as the report above 10 %, the loss smoothed over ~200 packets above
    10 %, and cuts by that smoothed fraction: at 5 % random loss one 20-packet
    batch in twelve reads above 10 %, and cutting on each would drag the rate
    down in steps the hold band never gives back; a step to 30 % loss still
    bites within ~100 packets. The bound starts at the maximum, so random loss
    alone never pins the rate where it happened to be (Chrome's loss
    controller does); a cut starts from the current estimate so it bites.
    """

    __slots__ = (
        "_last_decrease",
        "_lost",
        "_sent",
        "bound_bps",
        "last_loss",
        "loss_fraction",
        "max_bps",
        "smoothing_packets",
    )

    def __init__(
        self, max_bps: float = MAX_BITRATE_BPS, smoothing_packets: int = LOSS_SMOOTHING_PACKETS
    ) -> None:
        self.max_bps = float(max_bps)
        self.bound_bps = float(max_bps)
        self.smoothing_packets = smoothing_packets
        self.loss_fraction = 0.0  # smoothed; the prior is a clean link
        self.last_loss = 0.0  # of the last batch
        self._sent = 0
        self._lost = 0
        self._last_decrease: float | None = None

    def update(self, sent: int, lost: int, estimate_bps: float, now_ms: float) -> float:
        self._sent += sent
        self._lost += lost
        if self._sent < LOSS_MIN_PACKETS:
            return self.bound_bps
        loss = self._lost / self._sent
        weight = min(self._sent / self.smoothing_packets, 1.0) if self.smoothing_packets else 1.0
        self._sent = self._lost = 0
        self.loss_fraction += weight * (loss - self.loss_fraction)
        self.last_loss = loss
        if loss < LOSS_LOW:
            self.bound_bps = min(self.bound_bps * LOSS_INCREASE, self.max_bps)
        elif (
            loss > LOSS_HIGH
            and self.loss_fraction > LOSS_HIGH
            and (
                self._last_decrease is None
                or now_ms - self._last_decrease >= LOSS_DECREASE_INTERVAL_MS
            )
        ):
            self.bound_bps = min(self.bound_bps, estimate_bps) * (1.0 - 0.5 * self.loss_fraction)
            self._last_decrease = now_ms
        return self.bound_bps

    def raise_to(self, bitrate_bps: float) -> None:
        self.bound_bps = min(max(self.bound_bps, bitrate_bps), self.max_bps)


@dataclass(frozen=True, slots=True)
class ProbeCluster:
    """A burst to send: ``packets`` packets of ~``packet_size`` bytes paced at ``bitrate_bps``.

    Every packet of the burst (padding or RTX) must carry ``cluster_id`` into
    ``TransportSequencer.next_sequence(..., probe_cluster=cluster_id)``.
    """

    cluster_id: int
    bitrate_bps: int
    packets: int
    packet_size: int = PROBE_PACKET_SIZE

    @property
    def interval_us(self) -> int:
        return max(self.packet_size * 8_000_000 // max(self.bitrate_bps, 1), 1)


class _ClusterStats:
    __slots__ = (
        "bytes",
        "first_arrival",
        "first_arrival_size",
        "first_send",
        "last_arrival",
        "last_send",
        "last_send_size",
        "received",
        "seen",
    )

    def __init__(self) -> None:
        self.seen = 0
        self.received = 0
        self.bytes = 0
        self.first_send = math.inf
        self.last_send = -math.inf
        self.last_send_size = 0
        self.first_arrival = math.inf
        self.first_arrival_size = 0
        self.last_arrival = -math.inf


def probe_rate_bps(stats: _ClusterStats) -> float | None:
    """The rate a probe proved: min(send, receive rate), or under the receive rate if saturated."""
    send_interval = stats.last_send - stats.first_send
    receive_interval = stats.last_arrival - stats.first_arrival
    if send_interval <= 0 or receive_interval <= 0 or send_interval > PROBE_TIMEOUT_MS:
        return None
    send_rate = (stats.bytes - stats.last_send_size) * 8000.0 / send_interval
    receive_rate = (stats.bytes - stats.first_arrival_size) * 8000.0 / receive_interval
    if receive_rate < PROBE_SATURATED_RATIO * send_rate:
        return PROBE_SATURATED_SHARE * receive_rate
    return min(send_rate, receive_rate)


class ProbeController:
    """When to probe and at what rate; measures the probes' results from feedback."""

    __slots__ = ("_clusters", "_further_bps", "_last_probe", "_next_id", "_pending", "max_bps")

    def __init__(self, max_bps: float = MAX_BITRATE_BPS) -> None:
        self.max_bps = float(max_bps)
        self._next_id = 0
        self._pending: tuple[ProbeCluster, float] | None = None
        self._further_bps: float | None = None
        self._last_probe: float | None = None
        self._clusters: dict[int, _ClusterStats] = {}

    def request(
        self, estimate_bps: float, now_ms: float, *, increasing: bool
    ) -> ProbeCluster | None:
        if self._pending is not None:
            if now_ms - self._pending[1] < PROBE_TIMEOUT_MS:
                return None
            self._clusters.pop(self._pending[0].cluster_id, None)
            self._pending = None
        if estimate_bps >= self.max_bps:
            return None
        if self._last_probe is None:
            target = PROBE_INITIAL_FACTOR * estimate_bps
        elif self._further_bps is not None:
            target = self._further_bps
            self._further_bps = None
        elif increasing and now_ms - self._last_probe >= PROBE_INTERVAL_MS:
            target = PROBE_PERIODIC_FACTOR * estimate_bps
        else:
            return None
        target = min(target, self.max_bps)
        if target <= estimate_bps:
            return None
        packets = max(
            PROBE_MIN_PACKETS,
            math.ceil(target * PROBE_DURATION_MS / 1000.0 / (8 * PROBE_PACKET_SIZE)),
        )
        cluster = ProbeCluster(self._next_id, int(target), packets)
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        self._pending = (cluster, now_ms)
        self._last_probe = now_ms
        self._clusters[cluster.cluster_id] = _ClusterStats()
        return cluster

    def on_results(self, results: Iterable[PacketResult]) -> float | None:
        """Feed probe packets; returns the rate proved by a cluster completed now, if any."""
        if self._pending is None:
            return None
        cluster = self._pending[0]
        stats = self._clusters.get(cluster.cluster_id)
        if stats is None:
            return None
        for result in results:
            if result.probe_cluster != cluster.cluster_id:
                continue
            stats.seen += 1
            if result.arrival_time_us is None:
                continue
            send_ms = result.send_time_us / 1000.0
            arrival_ms = result.arrival_time_us / 1000.0
            stats.received += 1
            stats.bytes += result.size
            if send_ms < stats.first_send:
                stats.first_send = send_ms
            if send_ms >= stats.last_send:
                stats.last_send = send_ms
                stats.last_send_size = result.size
            if arrival_ms < stats.first_arrival:
                stats.first_arrival = arrival_ms
                stats.first_arrival_size = result.size
            stats.last_arrival = max(stats.last_arrival, arrival_ms)
        if stats.seen < cluster.packets:
            return None
        self._pending = None
        del self._clusters[cluster.cluster_id]
        if stats.received < PROBE_MIN_RECEIVED_RATIO * cluster.packets:
            return None
        rate = probe_rate_bps(stats)
        if rate is not None and rate >= PROBE_FURTHER_RATIO * cluster.bitrate_bps:
            self._further_bps = PROBE_FURTHER_FACTOR * rate
        return rate


class DelayBasedEstimator:
    """Inter-arrival grouping -> trendline -> overuse detector -> AIMD."""

    __slots__ = ("aimd", "detector", "inter_arrival", "trendline")

    def __init__(self, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.inter_arrival = InterArrival()
        self.trendline = TrendlineFilter()
        self.detector = OveruseDetector()
        self.aimd = AimdRateControl(start_bps, min_bps, max_bps)

    def add_packet(self, send_ms: float, arrival_ms: float) -> None:
        delta = self.inter_arrival.add(send_ms, arrival_ms)
        if delta is None:
            return
        slope = self.trendline.update(
            delta.arrival_delta_ms - delta.send_delta_ms, delta.arrival_ms
        )
        self.detector.detect(slope, self.trendline.deltas, delta.send_delta_ms, delta.arrival_ms)

    def update(self, acked_bps: float | None, now_ms: float) -> float:
        return self.aimd.update(self.detector.state, acked_bps, now_ms)


class SendSideEstimator:
    """Per subscriber transport: transport-cc results in, target bitrate (bps) out."""

    __slots__ = ("_estimate", "acked", "delay", "loss", "max_bps", "min_bps", "probes")

    def __init__(
        self,
        start_bps: int = START_BITRATE_BPS,
        min_bps: int = MIN_BITRATE_BPS,
        max_bps: int = MAX_BITRATE_BPS,
    ) -> None:
        if not 0 < min_bps <= start_bps <= max_bps:
            raise ValueError("need 0 < min <= start <= max")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.delay = DelayBasedEstimator(start_bps, min_bps, max_bps)
        self.loss = LossBasedControl(max_bps)
        self.acked = AcknowledgedBitrate()
        self.probes = ProbeController(max_bps)
        self._estimate = start_bps

    @property
    def estimate(self) -> int:
        """Current target bitrate in bps."""
        return self._estimate

    @property
    def acknowledged_bps(self) -> int | None:
        rate = self.acked.bitrate_bps()
        return None if rate is None else int(rate)

    def update_rtt(self, rtt_ms: float) -> None:
        """Round-trip time (e.g. from RTCP receiver reports); sets the AIMD response time."""
        if rtt_ms > 0:
            self.delay.aimd.rtt_ms = rtt_ms

    def on_feedback(self, results: list[PacketResult], now_ms: float) -> int:
        """Consume one report's packets (``sfu.twcc.match_feedback``); returns the estimate."""
        if not results:
            return self._estimate
        received = sorted(
            (r.arrival_time_us, r.send_time_us, r.size)
            for r in results
            if r.arrival_time_us is not None
        )
        lost = len(results) - len(received)
        for arrival_us, send_us, size in received:
            arrival_ms = arrival_us / 1000.0
            self.acked.add(arrival_ms, size)
            self.delay.add_packet(send_us / 1000.0, arrival_ms)
        acked_bps = self.acked.bitrate_bps()
        delay_bps = self.delay.update(acked_bps, now_ms)
        probe_bps = None
        if any(r.probe_cluster != NO_PROBE for r in results):
            probe_bps = self.probes.on_results(results)
        if (
            probe_bps is not None
            and probe_bps > self._estimate
            and self.delay.detector.state is not BandwidthUsage.OVERUSING
        ):
            # The link carried this much just now: neither part may hold below it.
            if probe_bps > delay_bps:
                self.delay.aimd.set_estimate(probe_bps, now_ms)
                delay_bps = self.delay.aimd.bitrate_bps
            self.loss.raise_to(probe_bps)
        loss_bps = self.loss.update(len(results), lost, self._estimate, now_ms)
        self._estimate = int(min(max(min(delay_bps, loss_bps), self.min_bps), self.max_bps))
        return self._estimate

    def probe_request(self, now_ms: float) -> ProbeCluster | None:
        """A probe cluster to send now, or None. Call it every few tens of ms."""
        increasing = self.delay.aimd.state is RateControlState.INCREASE
        return self.probes.request(self._estimate, now_ms, increasing=increasing)
