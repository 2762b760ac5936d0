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
    transport_feedback_fcis,
)

FEEDBACK_FRESH_FOR = 2.0  # seconds: without feedback for longer, fall back to REMB
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

    def stamp(self, size: int, probe_cluster: int = NO_PROBE) -> bytes:
        """The 2-byte transport-cc extension value for a packet about to be sent."""
        sequence = self.sequencer.next_sequence(time.monotonic_ns() // 1000, size, probe_cluster)
        return sequence.to_bytes(2, "big")

    def on_rtcp(self, compound: bytes) -> None:
        """Raw decrypted RTCP from the subscriber: feed its transport-cc reports."""
        try:
            fcis = transport_feedback_fcis(compound)
        except MalformedFeedback:
            self.malformed_feedback += 1
            return
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
