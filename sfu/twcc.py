"""Transport-wide congestion control: sequence numbers out, arrival feedback in.

draft-holmer-rmcat-transport-wide-cc-extensions-01. The SFU stamps one
16-bit sequence number, shared by every stream of a subscriber transport, on
each packet it sends (media, RTX, probes) and remembers when and how big each
one was. The subscriber's browser answers every 50-100 ms with an RTCP RTPFB
fmt=15 packet saying, per sequence number, whether and when it arrived. Joining
the two gives the send-side estimator (``sfu.gcc``) what it needs: send time,
arrival time or loss, and size of every packet.

Pure module: no aiortc, no I/O, no clock; callers pass times in.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sfu.rtp import MalformedPacket

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

RTCP_RTPFB = 205  # RFC 4585 §6.1: transport layer feedback
TRANSPORT_CC_FMT = 15  # draft §3.1
RTCP_VERSION = 2

SEQUENCE_MASK = 0xFFFF

# draft §3.1.1-3.1.4: packet status chunks and receive deltas.
FCI_HEADER_SIZE = 8  # base seq, status count, reference time, feedback count
CHUNK_SIZE = 2
SYMBOL_NOT_RECEIVED = 0
SYMBOL_SMALL_DELTA = 1
SYMBOL_LARGE_DELTA = 2
SYMBOL_RESERVED = 3
RUN_LENGTH_MAX = 0x1FFF  # 13-bit run length
ONE_BIT_VECTOR_SYMBOLS = 14
TWO_BIT_VECTOR_SYMBOLS = 7
DELTA_TICK_US = 250
SMALL_DELTA_MAX_TICKS = 0xFF
LARGE_DELTA_MIN_TICKS = -0x8000
LARGE_DELTA_MAX_TICKS = 0x7FFF
REFERENCE_TIME_TICK_US = 64_000
REFERENCE_TIME_MOD = 1 << 24
REFERENCE_TIME_HALF = 1 << 23
MAX_STATUS_COUNT = 0xFFFF

DEFAULT_HISTORY = 4096  # ~4 s at 1000 packets/s: feedback older than that is useless
NO_PROBE = -1

_FCI_HEADER = struct.Struct("!HHI")
_LARGE_DELTA = struct.Struct("!h")
_RTPFB_HEADER = struct.Struct("!BBHII")

# Slot states of the send history: the 16-bit sequence number itself means
# "sent, not yet reported"; with this bit added, "reported lost" (a late
# report may still say it arrived); EMPTY means free or already acknowledged.
_LOST_FLAG = 1 << 16
_EMPTY = -1


class MalformedFeedback(MalformedPacket):
    """A transport-cc FCI that cannot be read; the report is dropped, the transport lives on."""


@dataclass(frozen=True, slots=True)
class TransportFeedback:
    """One parsed transport-cc report.

    ``arrivals[i]`` is about sequence number ``(base_sequence + i) & 0xFFFF``:
    its arrival time in µs after the reference time, or None when the
    receiver reports it as not (yet) received.
    """

    base_sequence: int
    reference_time: int  # signed 24-bit, in units of 64 ms (draft §3.1)
    feedback_count: int
    arrivals: list[int | None]

    def packets(self) -> Iterator[tuple[int, int | None]]:
        """(sequence number, arrival µs after the reference time or None) in report order."""
        base = self.base_sequence
        for offset, arrival in enumerate(self.arrivals):
            yield (base + offset) & SEQUENCE_MASK, arrival


class PacketResult(NamedTuple):
    """What the estimator learns about one sent packet (a tuple: cheap to build).

    Times are µs: ``send_time_us`` on the sender's clock, ``arrival_time_us``
    on the receiver's (only differences between arrivals mean anything), None
    when the packet was reported lost.
    """

    sequence: int
    send_time_us: int
    arrival_time_us: int | None
    size: int
    probe_cluster: int = NO_PROBE


class TransportSequencer:
    """Transport-wide sequence numbers and send history of one subscriber transport.

    ``next_sequence`` runs for every packet sent, so the history is three
    preallocated lists indexed by ``seq & mask``: no allocation per packet, and
    the slot's stored sequence number tells a live entry from a stale one.
    """

    __slots__ = (
        "_clusters",
        "_mask",
        "_next",
        "_reference",
        "_reference_raw",
        "_send_us",
        "_seqs",
        "_sizes",
    )

    def __init__(self, capacity: int = DEFAULT_HISTORY, first_sequence: int = 0) -> None:
        if capacity <= 0 or capacity & (capacity - 1) or capacity > SEQUENCE_MASK + 1:
            raise ValueError("capacity must be a power of two up to 65536")
        self._mask = capacity - 1
        self._next = first_sequence & SEQUENCE_MASK
        self._seqs: list[int] = [_EMPTY] * capacity
        self._send_us: list[int] = [0] * capacity
        self._sizes: list[int] = [0] * capacity
        self._clusters: list[int] = [NO_PROBE] * capacity
        self._reference: int | None = None  # unwrapped reference time, 64 ms ticks
        self._reference_raw = 0

    def next_sequence(self, send_time_us: int, size: int, probe_cluster: int = NO_PROBE) -> int:
        """The sequence number to stamp on a packet of ``size`` bytes sent now; records it."""
        seq = self._next
        self._next = (seq + 1) & SEQUENCE_MASK
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._send_us[slot] = send_time_us
        self._sizes[slot] = size
        self._clusters[slot] = probe_cluster
        return seq

    @property
    def last_sequence(self) -> int:
        """The most recently handed-out sequence number."""
        return (self._next - 1) & SEQUENCE_MASK

    def unwrap_reference_time(self, reference_time: int) -> int:
        """Place a 24-bit reference time on one continuous timeline (64 ms ticks).

        Successive reports are assumed less than 2^23 ticks (6 days) apart, so
        the shortest way round the 24-bit circle is the right one; reports
        arriving out of order simply step back a little.
        """
        raw = reference_time % REFERENCE_TIME_MOD
        if self._reference is None:
            self._reference = raw - REFERENCE_TIME_MOD if raw >= REFERENCE_TIME_HALF else raw
        else:
            step = (raw - self._reference_raw) % REFERENCE_TIME_MOD
            if step >= REFERENCE_TIME_HALF:
                step -= REFERENCE_TIME_MOD
            self._reference += step
        self._reference_raw = raw
        return self._reference


def match_feedback(
    sequencer: TransportSequencer, feedback: TransportFeedback
) -> list[PacketResult]:
    """Join a report with the send history, in report (= send) order.

    Sequence numbers the history no longer (or never) held are skipped. A
    packet acknowledged once is not reported again; one reported lost is
    reported lost once, and as received if a later report says it arrived.
    """
    reference_us = sequencer.unwrap_reference_time(feedback.reference_time) * REFERENCE_TIME_TICK_US
    seqs = sequencer._seqs
    mask = sequencer._mask
    results: list[PacketResult] = []
    for seq, arrival in feedback.packets():
        slot = seq & mask
        state = seqs[slot]
        if arrival is None:
            if state != seq:
                continue
            seqs[slot] = seq | _LOST_FLAG
            arrival_us = None
        else:
            if state != seq and state != seq | _LOST_FLAG:
                continue
            seqs[slot] = _EMPTY
            arrival_us = reference_us + arrival
        results.append(
            PacketResult(
                sequence=seq,
                send_time_us=sequencer._send_us[slot],
                arrival_time_us=arrival_us,
                size=sequencer._sizes[slot],
                probe_cluster=sequencer._clusters[slot],
            )
        )
    return results


def parse_feedback(fci: bytes) -> TransportFeedback:
    """Parse the FCI of a transport-cc packet (the bytes after the media source SSRC).

    Work is bounded by the input: runs of lost packets cost nothing per
    packet, and every received packet needs at least one delta byte.
    Trailing bytes (padding to 32 bits) are ignored. Raises
    ``MalformedFeedback`` for anything truncated or reserved.
    """
    size = len(fci)
    if size < FCI_HEADER_SIZE:
        raise MalformedFeedback(f"transport-cc FCI of {size} bytes is shorter than its header")
    base, count, reference_and_count = _FCI_HEADER.unpack_from(fci)
    if count == 0:
        raise MalformedFeedback("transport-cc feedback reports no packets")
    reference = reference_and_count >> 8
    if reference >= REFERENCE_TIME_HALF:
        reference -= REFERENCE_TIME_MOD
    # Received packets in report order, as index * 2 + (1 if large delta).
    received: list[int] = []
    index = 0
    pos = FCI_HEADER_SIZE
    while index < count:
        if pos + CHUNK_SIZE > size:
            raise MalformedFeedback(f"packet status chunks end after {index} of {count} packets")
        chunk = (fci[pos] << 8) | fci[pos + 1]
        pos += CHUNK_SIZE
        if not chunk & 0x8000:  # run length chunk
            symbol = (chunk >> 13) & 0x3
            take = min(chunk & RUN_LENGTH_MAX, count - index)
            if symbol == SYMBOL_RESERVED and take:
                raise MalformedFeedback("run length chunk with the reserved symbol")
            if symbol != SYMBOL_NOT_RECEIVED:
                large = symbol == SYMBOL_LARGE_DELTA
                received.extend(range(2 * index + large, 2 * (index + take), 2))
            index += take
        elif not chunk & 0x4000:  # status vector, 14 one-bit symbols
            take = min(ONE_BIT_VECTOR_SYMBOLS, count - index)
            for k in range(take):
                if (chunk >> (13 - k)) & 0x1:
                    received.append(2 * (index + k))
            index += take
        else:  # status vector, 7 two-bit symbols
            take = min(TWO_BIT_VECTOR_SYMBOLS, count - index)
            for k in range(take):
                symbol = (chunk >> (12 - 2 * k)) & 0x3
                if symbol == SYMBOL_RESERVED:
                    raise MalformedFeedback("status vector chunk with the reserved symbol")
                if symbol != SYMBOL_NOT_RECEIVED:
                    received.append(2 * (index + k) + (symbol == SYMBOL_LARGE_DELTA))
            index += take
    arrivals: list[int | None] = [None] * count
    ticks = 0
    for item in received:
        if item & 1:
            if pos + 2 > size:
                raise MalformedFeedback("receive deltas are truncated")
            ticks += _LARGE_DELTA.unpack_from(fci, pos)[0]
            pos += 2
        else:
            if pos >= size:
                raise MalformedFeedback("receive deltas are truncated")
            ticks += fci[pos]
            pos += 1
        arrivals[item >> 1] = ticks * DELTA_TICK_US
    return TransportFeedback(
        base_sequence=base,
        reference_time=reference,
        feedback_count=reference_and_count & 0xFF,
        arrivals=arrivals,
    )


def build_feedback(
    base_sequence: int,
    reference_time: int,
    feedback_count: int,
    arrivals: Sequence[int | None],
) -> bytes:
    """Serialise a transport-cc FCI, padded to 32 bits.

    ``arrivals[i]`` is the arrival of sequence ``base_sequence + i`` in µs
    after ``reference_time`` (64 ms units, signed 24-bit), rounded to 250 µs;
    None means not received. Raises ValueError when a delta does not fit 16
    bits: the caller must then start a new report.
    """
    count = len(arrivals)
    if not 0 < count <= MAX_STATUS_COUNT:
        raise ValueError(f"a report covers 1-{MAX_STATUS_COUNT} packets, not {count}")
    if not -REFERENCE_TIME_HALF <= reference_time < REFERENCE_TIME_MOD:
        raise ValueError(f"reference time {reference_time} does not fit 24 bits")
    symbols = bytearray(count)
    deltas = bytearray()
    previous = 0
    for i, arrival in enumerate(arrivals):
        if arrival is None:
            continue
        ticks = (arrival + DELTA_TICK_US // 2) // DELTA_TICK_US
        delta = ticks - previous
        previous = ticks
        if 0 <= delta <= SMALL_DELTA_MAX_TICKS:
            symbols[i] = SYMBOL_SMALL_DELTA
            deltas.append(delta)
        elif LARGE_DELTA_MIN_TICKS <= delta <= LARGE_DELTA_MAX_TICKS:
            symbols[i] = SYMBOL_LARGE_DELTA
            deltas += _LARGE_DELTA.pack(delta)
        else:
            raise ValueError(f"receive delta of {delta * DELTA_TICK_US} µs does not fit 16 bits")
    out = bytearray(
        _FCI_HEADER.pack(
            base_sequence & SEQUENCE_MASK,
            count,
            ((reference_time % REFERENCE_TIME_MOD) << 8) | (feedback_count & 0xFF),
        )
    )
    for chunk in _encode_chunks(symbols):
        out += chunk.to_bytes(CHUNK_SIZE, "big")
    out += deltas
    out += b"\x00" * (-len(out) % 4)
    return bytes(out)


def _encode_chunks(symbols: bytearray) -> Iterator[int]:
    """Greedy chunking: long runs as run length, else the densest vector that fits."""
    count = len(symbols)
    i = 0
    while i < count:
        symbol = symbols[i]
        run = 1
        while i + run < count and run < RUN_LENGTH_MAX and symbols[i + run] == symbol:
            run += 1
        window = symbols[i : i + ONE_BIT_VECTOR_SYMBOLS]
        if run >= ONE_BIT_VECTOR_SYMBOLS or (run >= TWO_BIT_VECTOR_SYMBOLS and max(window) > 1):
            yield (symbol << 13) | run
            i += run
        elif max(window) <= SYMBOL_SMALL_DELTA:
            chunk = 0x8000
            for k, value in enumerate(window):
                chunk |= value << (13 - k)
            yield chunk
            i += ONE_BIT_VECTOR_SYMBOLS
        else:
            chunk = 0xC000
            for k, value in enumerate(symbols[i : i + TWO_BIT_VECTOR_SYMBOLS]):
                chunk |= value << (12 - 2 * k)
            yield chunk
            i += TWO_BIT_VECTOR_SYMBOLS


def build_feedback_packet(sender_ssrc: int, media_ssrc: int, fci: bytes) -> bytes:
    """Wrap an FCI (already padded to 32 bits) in its RTCP RTPFB header (RFC 4585 §6.1)."""
    if len(fci) % 4:
        raise ValueError("the FCI must be padded to a multiple of 4 bytes")
    length_words = (12 + len(fci)) // 4 - 1
    header = _RTPFB_HEADER.pack(
        (RTCP_VERSION << 6) | TRANSPORT_CC_FMT, RTCP_RTPFB, length_words, sender_ssrc, media_ssrc
    )
    return header + fci
