"""The receiving side of transport-cc: what a browser reports back to the sender.

A subscriber that negotiated transport-cc tells the SFU, every ~50 ms, when
each packet (by transport-wide sequence number) arrived. Browsers do this
natively; test and load-test participants use this class so that the SFU
runs its send-side estimator with them exactly as with a tablet.
"""

from __future__ import annotations

from sfu.twcc import REFERENCE_TIME_MOD, REFERENCE_TIME_TICK_US, build_feedback

MAX_PACKETS_PER_REPORT = 500


class TransportFeedbackGenerator:
    """Collects arrivals; ``report()`` returns one FCI covering everything new."""

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped sequence -> arrival (µs)
        self._highest: int | None = None
        self._next_base: int | None = None
        self._feedback_count = 0

    def on_packet(self, sequence: int, arrival_us: int) -> None:
        if self._highest is None:
            unwrapped = sequence
            self._next_base = sequence
        else:
            delta = (sequence - self._highest) & 0xFFFF
            unwrapped = self._highest + (delta if delta < 0x8000 else delta - 0x10000)
        if self._next_base is not None and unwrapped < self._next_base:
            return  # already reported (a late duplicate or retransmission of a reported one)
        self._arrivals[unwrapped] = arrival_us
        if self._highest is None or unwrapped > self._highest:
            self._highest = unwrapped

    def report(self) -> bytes | None:
        """The FCI of the next report, or None when nothing arrived since the last one."""
        if self._highest is None or self._next_base is None or not self._arrivals:
            return None
        base = self._next_base
        end = min(self._highest + 1, base + MAX_PACKETS_PER_REPORT)
        received = [self._arrivals[s] for s in range(base, end) if s in self._arrivals]
        if not received:
            return None
        reference = min(received) // REFERENCE_TIME_TICK_US
        origin = reference * REFERENCE_TIME_TICK_US
        arrivals = [None if (at := self._arrivals.pop(s, None)) is None else at - origin
                    for s in range(base, end)]
        self._next_base = end
        fci = build_feedback(base & 0xFFFF, reference % REFERENCE_TIME_MOD,
                             self._feedback_count & 0xFF, arrivals)
        self._feedback_count += 1
        return fci
