"""How much one subscriber's link can take: send-side estimation, REMB as fallback.

When the subscriber negotiated transport-cc (Chrome, Safari), every packet
the SFU sends it carries a transport-wide sequence number; the subscriber's
feedback says when each arrived, and the GCC-style estimator in ``sfu.gcc``
turns that into a target bitrate, probing with padding to find headroom.
Subscribers without transport-cc feedback (aiortc peers, old browsers) send
REMB, which the allocator uses instead (see ``Participant._budget``).
"""

from __future__ import annotations

import math
import time

from sfu.gcc import ProbeCluster, SendSideEstimator
from sfu.twcc import (
    NO_PROBE,
    MalformedFeedback,
    TransportSequencer,
    match_feedback,
    parse_feedback,
)

FEEDBACK_FRESH_FOR = 2.0  # seconds: without feedback for longer, fall back to REMB
DEFAULT_BUDGET_BPS = 3_000_000  # receive-side fallback, while the link shows no congestion
CONGESTION_HOLD = 10.0  # seconds the fallback estimate rules after congestion
CONGESTION_HOLD_MAX = 60.0  # the hold doubles up to this when congestion keeps coming back
HIGH_LOSS = 0.10  # GCC's loss-based bands (draft-ietf-rmcat-gcc-02 §6): above this, back off
LOSS_WINDOW = 0.25  # seconds: shortest interval a loss fraction is measured over
PADDING_BYTES = 255  # the most one padding-only packet can carry (RFC 3550 §5.1)
MAX_PROBE_PACKETS = 200  # per cluster, whatever the estimator asks


class SubscriberBandwidth:
    """Transport-wide sequence numbers out, feedback in, target bitrate out."""

    def __init__(self) -> None:
        self.sequencer = TransportSequencer()
        self.estimator = SendSideEstimator()
        self.remb_bps: int | None = None
        self.feedback_reports = 0
        self.malformed_feedback = 0
        self._last_feedback = -math.inf
        self._congested_until = -CONGESTION_HOLD_MAX
        self._hold = CONGESTION_HOLD
        self._loss = _LossWindow()

    def stamp(self, size: int, probe_cluster: int = NO_PROBE) -> bytes:
        """The 2-byte transport-cc extension value for a packet about to be sent."""
        sequence = self.sequencer.next_sequence(time.monotonic_ns() // 1000, size, probe_cluster)
        return sequence.to_bytes(2, "big")

    def on_transport_feedback(self, fcis: list[bytes]) -> None:
        """The subscriber's transport-cc reports (FCIs, from ``sfu.subscriber_rtcp``)."""
        now = time.monotonic()
        for fci in fcis:
            try:
                results = match_feedback(self.sequencer, parse_feedback(fci))
            except MalformedFeedback:
                self.malformed_feedback += 1
                continue
            self.estimator.on_feedback(results, now * 1000.0)
            self.feedback_reports += 1
            self._last_feedback = now

    @property
    def send_side_active(self) -> bool:
        return time.monotonic() - self._last_feedback < FEEDBACK_FRESH_FOR

    @property
    def estimate_bps(self) -> int | None:
        """The send-side estimate while feedback flows, else the subscriber's REMB."""
        return self.estimator.estimate if self.send_side_active else self.remb_bps

    def budget(self, forwarded_bps: int, packets_sent: int, packets_nacked: int,
               now: float) -> int:
        """What the allocator may spend on this subscriber's video now.

        With transport-cc feedback: the send-side estimate. Without it, a
        receive-side estimate (REMB) never grows much beyond what it receives,
        so it cannot say whether a higher layer would fit: the SFU trusts the
        link while it shows no congestion, and once REMB falls below what is
        forwarded, or NACKed packets exceed 10 %, it follows REMB and the loss
        bound for at least ``CONGESTION_HOLD`` seconds (doubling when
        congestion keeps coming back, so a narrow link does not flap).
        """
        if self.send_side_active:
            return self.estimator.estimate
        loss = self._loss.fraction(packets_sent, packets_nacked, now)
        remb = self.remb_bps
        limits = [] if remb is None else [remb]
        if loss > HIGH_LOSS:
            limits.append(int(forwarded_bps * (1 - 0.5 * loss)))
        if loss > HIGH_LOSS or (remb is not None and remb < 0.8 * forwarded_bps):
            if now >= self._congested_until:
                recent = now - self._congested_until < CONGESTION_HOLD_MAX
                self._hold = min(self._hold * 2, CONGESTION_HOLD_MAX) if recent else (
                    CONGESTION_HOLD)
            self._congested_until = now + self._hold
        if now < self._congested_until:
            return min(limits) if limits else forwarded_bps
        return max(remb or 0, DEFAULT_BUDGET_BPS)

    @property
    def congested(self) -> bool:
        return time.monotonic() < self._congested_until

    def probe(self) -> tuple[ProbeCluster, int, float] | None:
        """A probe to send now as padding: (cluster, packet count, seconds between packets)."""
        if not self.send_side_active:
            return None
        cluster = self.estimator.probe_request(time.monotonic() * 1000.0)
        if cluster is None:
            return None
        total_bytes = cluster.packets * cluster.packet_size
        count = min(MAX_PROBE_PACKETS, max(1, math.ceil(total_bytes / PADDING_BYTES)))
        interval = PADDING_BYTES * 8 / max(cluster.bitrate_bps, 1)
        return cluster, count, interval


class _LossWindow:
    """Share of packets a subscriber NACKed, over the last quarter second or more."""

    def __init__(self) -> None:
        self._sent = 0
        self._nacked = 0
        self._at = time.monotonic()
        self._fraction = 0.0

    def fraction(self, sent: int, nacked: int, now: float) -> float:
        if now - self._at >= LOSS_WINDOW:
            sent_delta = sent - self._sent
            nacked_delta = nacked - self._nacked
            self._fraction = min(1.0, nacked_delta / sent_delta) if sent_delta > 20 else 0.0
            self._sent, self._nacked, self._at = sent, nacked, now
        return self._fraction
