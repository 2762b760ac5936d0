"""Counters of the media plane, exposed by the signaling server and read by benchmarks."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class SfuCounters:
    """Monotonic counters for one SFU process (cheap integer increments on the hot path)."""

    rtp_packets_in: int = 0
    rtp_bytes_in: int = 0
    rtp_packets_out: int = 0
    rtp_bytes_out: int = 0
    rtp_malformed: int = 0
    rtp_unknown_ssrc: int = 0
    rtp_dropped_unknown_payload: int = 0
    rtp_padding_dropped: int = 0
    rtcp_malformed: int = 0
    rtcp_feedback_direct: int = 0  # subscribers' RTCP packets read in the socket callback (the tap)
    rtp_unexpected_on_subscribe: int = 0
    consumer_errors: int = 0
    ingress_errors: int = 0
    send_failures: int = 0
    nacks_received: int = 0
    nacks_sent_upstream: int = 0
    retransmissions: int = 0
    nack_misses: int = 0  # NACKed packets no longer (or never) in the consumer's history
    plis_received: int = 0
    plis_sent_upstream: int = 0
    remb_sent_upstream: int = 0
    probe_packets: int = 0
    stalled_clients: int = 0  # participants dropped because they stopped reading their events

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
