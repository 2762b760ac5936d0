"""Receive-side statistics of one publisher stream: what the SFU reports upstream.

The SFU takes the packets away from aiortc's receiver, so it computes the
receiver report fields (RFC 3550 §6.4.1, appendix A.3 and A.8) and the list
of missing packets to NACK (RFC 4585 §6.2.1) itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfu.rtp import seq_newer

MAX_NACK_AGE = 512  # packets: older holes are no longer worth asking for
MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump this big restarts the sequence


@dataclass(slots=True)
class ReportBlock:
    """The fields of one RTCP report block about one publisher SSRC."""

    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int


class ReceptionStats:
    """Loss and interarrival jitter of one RTP stream."""

    __slots__ = (
        "_base_ext_seq",
        "_clock_rate",
        "_cycles",
        "_expected_prior",
        "_jitter_q4",
        "_last_transit",
        "_max_seq",
        "_received_prior",
        "packets_received",
    )

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._max_seq = -1
        self._cycles = 0
        self._base_ext_seq = 0
        self.packets_received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter_q4 = 0
        self._last_transit: int | None = None

    def add(self, seq: int, timestamp: int, arrival_seconds: float) -> bool:
        """Count one packet; True when it is the newest of the stream so far (in order)."""
        self.packets_received += 1
        if self._max_seq < 0:
            self._max_seq = seq
            self._base_ext_seq = seq
        elif seq_newer(seq, self._max_seq):
            delta = (seq - self._max_seq) & 0xFFFF
            if delta > MAX_DROPOUT:
                self._restart(seq)
            else:
                if seq < self._max_seq:
                    self._cycles += 1 << 16
                self._max_seq = seq
        else:
            return False  # reordered or retransmitted: counted, but no jitter sample
        transit = int(arrival_seconds * self._clock_rate) - timestamp
        if self._last_transit is not None:
            # RTP timestamps wrap at 2**32: the difference is taken as a signed 32-bit value.
            d = abs(((transit - self._last_transit + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
            self._jitter_q4 += d - ((self._jitter_q4 + 8) >> 4)
        self._last_transit = transit
        return True

    def _restart(self, seq: int) -> None:
        self._max_seq = seq
        self._cycles = 0
        self._base_ext_seq = seq
        self.packets_received = 1
        self._expected_prior = 0
        self._received_prior = 0

    @property
    def extended_max_seq(self) -> int:
        return self._cycles + max(self._max_seq, 0)

    @property
    def packets_expected(self) -> int:
        """Sequence numbers from the first packet to the newest (RFC 3550 A.3), 0 before any."""
        return 0 if self._max_seq < 0 else self.extended_max_seq - self._base_ext_seq + 1

    def report(self) -> ReportBlock:
        """The next report block; resets the interval used for the fraction lost."""
        expected = self.packets_expected
        lost = max(0, min(expected - self.packets_received, 0x7FFFFF))
        expected_interval = expected - self._expected_prior
        received_interval = self.packets_received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets_received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return ReportBlock(
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self.extended_max_seq & 0xFFFFFFFF,
            jitter=self._jitter_q4 >> 4,
        )


class NackTracker:
    """The holes in one stream's sequence numbers that are still worth a NACK."""

    __slots__ = ("_max_seq", "missing")

    def __init__(self) -> None:
        self._max_seq: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        """Record ``seq``; True when it opened a new hole (a NACK should go out now)."""
        if self._max_seq is None:
            self._max_seq = seq
            return False
        if not seq_newer(seq, self._max_seq):
            self.missing.discard(seq)
            return False
        gap = (seq - self._max_seq) & 0xFFFF
        self._max_seq = seq
        if self.missing:
            # A hole older than MAX_NACK_AGE must go before its number comes round again.
            self.missing.discard(seq)
            self._forget_old()
        if gap == 1:
            return False
        if gap > MAX_NACK_AGE:
            self.missing.clear()
            return False
        for missing in range(1, gap):
            self.missing.add((seq - missing) & 0xFFFF)
        self._forget_old()
        return True

    def _forget_old(self) -> None:
        assert self._max_seq is not None
        newest = self._max_seq
        stale = [s for s in self.missing if (newest - s) & 0xFFFF > MAX_NACK_AGE]
        for seq in stale:
            self.missing.discard(seq)
