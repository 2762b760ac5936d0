"""A ring of recent packets by 16-bit sequence number, so a subscriber's NACK is answered
by the SFU.

Each consumer keeps one, keyed by the sequence numbers *it* sent; the entries
are references to the publisher's packets (shared by every consumer, never
copied), so a NACK for a packet forwarded before a simulcast switch is still
answered exactly.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_CAPACITY = 1024  # ~1-3 s of 720p video: longer than any useful retransmission


class PacketCache(Generic[T]):
    """A power-of-two ring indexed by 16-bit sequence number."""

    __slots__ = ("_mask", "_packets", "_seqs")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._mask = capacity - 1
        self._seqs: list[int] = [-1] * capacity
        self._packets: list[T | None] = [None] * capacity

    def put(self, seq: int, packet: T) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._packets[slot] = packet

    def get(self, seq: int) -> T | None:
        """The packet with exactly this sequence number, if it is still in the ring."""
        slot = seq & self._mask
        if self._seqs[slot] != seq:
            return None
        return self._packets[slot]
