"""A ring of recent packets by 16-bit sequence number, so a subscriber's NACK is answered
by the SFU.

Each consumer keeps one, keyed by the sequence numbers *it* sent; the entries
are references to the publisher's packets (shared by every consumer, never
copied), so a NACK for a packet forwarded before a simulcast switch is still
answered exactly.
"""

from __future__ import annotations

from typing import Generic, TypeVar

P = TypeVar("P")
C = TypeVar("C")

DEFAULT_CAPACITY = 1024  # ~1-3 s of 720p video: longer than any useful retransmission


class PacketCache(Generic[P, C]):
    """A power-of-two ring indexed by 16-bit sequence number: a packet and its context.

    The packet and its context (for a consumer: the segment whose rewrite
    applies to it) are kept in parallel lists rather than as a pair: ``put``
    runs once per forwarded copy, and a pair would be one more object to
    allocate per copy and, a ring later, to free while cold in memory (the
    worker's profile had ``put`` at a tenth of its samples). The pair is made
    by ``get``, which only a NACK calls.
    """

    __slots__ = ("_contexts", "_mask", "_packets", "_seqs")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._mask = capacity - 1
        self._seqs: list[int] = [-1] * capacity
        self._packets: list[P | None] = [None] * capacity
        self._contexts: list[C | None] = [None] * capacity

    def put(self, seq: int, packet: P, context: C) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._packets[slot] = packet
        self._contexts[slot] = context

    def get(self, seq: int) -> tuple[P, C] | None:
        """The packet with exactly this sequence number and its context, if still here."""
        slot = seq & self._mask
        if self._seqs[slot] != seq:
            return None
        return self._packets[slot], self._contexts[slot]  # type: ignore[return-value]
