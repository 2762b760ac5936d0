"""The light participant's receive path: a few header fields and counters per SRTP packet.

aiortc's receive path costs 20-45 µs per packet (``../shared/research/aiortc.md``
§5: aioice tries every datagram as STUN and queues it, the DTLS transport's
coroutine awaits it, pylibsrtp allocates per call, ``RtpPacket.parse`` builds
objects). A load-test subscriber only needs counts, so after the handshake
each datagram is handled by one synchronous function (``DirectReceive``):

* libsrtp's ``srtp_unprotect`` is called straight through pylibsrtp's cffi
  binding on one reused buffer (authenticated and decrypted as a browser
  would; no allocation per packet);
* sequence number, timestamp, SSRC, marker and the transport-cc extension
  are read from the header, which SRTP leaves in clear; the decrypted
  payload is looked at only for a VP8 packet that may start a keyframe;
* per-SSRC counters (RFC 3550 loss and jitter, frames, freezes) are updated
  in place (``RtpCounter.count``), with no object built per packet.

The RTCP a browser sends is built from these counters *on timers*, never per
packet: aiortc's receiver loop sends receiver reports from the
``ReceivedStream`` objects (they answer what it reads from its own
statistics), and ``RtcpTicker`` runs one timer per event loop that sends every
participant's NACKs and transport-cc feedback.
"""

from __future__ import annotations

import asyncio
import struct
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi, lib

from loadtest.twcc_feedback import TransportFeedbackGenerator
from sfu.vp8 import keyframe_size, parse_descriptor

FREEZE_GAP = 0.5  # s without a completed video frame
MAX_DATAGRAM = 2048  # bytes; a bigger datagram takes aiortc's path
NACK_HISTORY = 128  # newest missing packets tracked per stream (aiortc's RTP_HISTORY_SIZE)
NACK_RETRIES = 5  # a missing packet is asked for at most this often
NACK_RETRY_TICKS = 4  # ticks between two NACKs of the same packet
MAX_NACKED = 64  # sequence numbers per NACK message
_FIXED_HEADER = struct.Struct("!BBHII")


class ReceivedStream:
    """One received SSRC: what a browser counts for it, updated in place per packet.

    ``packets_received``, ``max_seq``, ``fraction_lost``, ``packets_lost`` and
    ``jitter`` have the names and meanings of aiortc's ``StreamStatistics``,
    so aiortc's RTCP loop builds receiver reports from this object.
    """

    __slots__ = (
        "base_seq", "clock_rate", "cycles", "expected_prior", "first_at", "frames",
        "freeze_seconds", "freezes", "jitter_q4", "keyframes", "kind", "last_arrival",
        "last_frame_at", "last_timestamp", "max_seq", "mid", "missing", "nacks_sent", "octets",
        "packets", "packets_received", "received_prior", "resolution", "rtx", "ssrc", "vp8",
    )

    def __init__(self, ssrc: int, kind: str, mid: str | None, clock_rate: int,
                 rtx: bool = False, vp8: bool = False) -> None:
        self.ssrc = ssrc
        self.kind = kind
        self.mid = mid
        self.clock_rate = clock_rate or 90000
        self.rtx = rtx
        self.vp8 = vp8
        self.packets = 0  # every packet, including duplicates and retransmissions
        self.octets = 0
        self.frames = 0
        self.keyframes = 0
        self.freezes = 0
        self.freeze_seconds = 0.0
        self.first_at: float | None = None
        self.last_frame_at: float | None = None
        self.resolution: tuple[int, int] | None = None
        self.nacks_sent = 0
        self.base_seq = -1  # -1: nothing received yet
        self.max_seq = -1
        self.cycles = 0  # sequence number wraps << 16
        self.packets_received = 0
        self.jitter_q4 = 0.0  # RFC 3550 interarrival jitter x 16, in clock units
        self.last_arrival = 0.0
        self.last_timestamp = -1
        self.expected_prior = 0
        self.received_prior = 0
        self.missing: dict[int, int] = {}  # extended sequence number -> NACKs sent for it

    # --- what aiortc's RTCP loop reads (RFC 3550 appendix A.3)
    @property
    def packets_expected(self) -> int:
        return 0 if self.base_seq < 0 else self.cycles + self.max_seq - self.base_seq + 1

    @property
    def packets_lost(self) -> int:
        return max(-0x800000, min(0x7FFFFF, self.packets_expected - self.packets_received))

    @property
    def fraction_lost(self) -> int:
        """Lost since the previous report, in 1/256 (reading it starts a new interval)."""
        expected, received = self.packets_expected, self.packets_received
        expected_interval = expected - self.expected_prior
        lost_interval = expected_interval - (received - self.received_prior)
        self.expected_prior, self.received_prior = expected, received
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    @property
    def jitter(self) -> int:
        return int(self.jitter_q4) >> 4

    # --- reports
    @property
    def expected(self) -> int:
        return self.packets_expected

    @property
    def lost(self) -> int:
        return max(0, self.packets_expected - self.packets_received)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter_q4 / 16 / self.clock_rate

    def take_nack(self) -> list[int]:
        """The sequence numbers to ask for now (called by the ticker, not per packet)."""
        due: list[int] = []
        for extended, sent in list(self.missing.items()):
            if sent >= NACK_RETRIES * NACK_RETRY_TICKS:
                del self.missing[extended]
            else:
                if sent % NACK_RETRY_TICKS == 0 and len(due) < MAX_NACKED:
                    due.append(extended & 0xFFFF)
                self.missing[extended] = sent + 1
        return due


def _one_byte_extension(data: bytes, pos: int, end: int, wanted: int) -> int:
    """The 2-byte value of one-byte header extension ``wanted`` (RFC 8285), or -1."""
    if data[pos - 4:pos - 2] != b"\xbe\xde":
        return -1
    end = min(end, len(data))
    while pos < end:
        byte = data[pos]
        if byte == 0:
            pos += 1
            continue
        ext_id, length = byte >> 4, (byte & 0x0F) + 1
        if ext_id == 15:
            return -1
        if ext_id == wanted:
            return (data[pos + 1] << 8 | data[pos + 2]) if length == 2 else -1
        pos += 1 + length
    return -1


class RtpCounter:
    """Counts RTP packets per SSRC from their header (and a VP8 payload's first bytes)."""

    def __init__(self, new_stream: Callable[[int, int], ReceivedStream],
                 mark: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.streams: dict[int, ReceivedStream] = {}
        self.packets = 0
        self.octets = 0
        self.direct = 0  # packets that came through ``DirectReceive``
        self.twcc_id = 0  # the transport-cc extension's id; 0 when not negotiated
        self.feedback = TransportFeedbackGenerator()
        self.nack_due = False  # a stream has missing packets
        self._new_stream = new_stream
        self._mark = mark
        self._clock = clock

    def count(self, header: bytes, plain: bytes | bytearray, size: int) -> None:
        """One packet: ``header`` holds its RTP header (SRTP leaves it in clear) and
        ``plain[:size]`` the decrypted packet (the same bytes on aiortc's path)."""
        if size < 12:
            return
        first, second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(header)
        if first >> 6 != 2:
            return
        pos = 12 + 4 * (first & 0x0F)
        extension_start = extension_end = 0
        if first & 0x10:
            if size < pos + 4:
                return
            extension_start = pos + 4
            extension_end = extension_start + 4 * (header[pos + 2] << 8 | header[pos + 3])
            pos = extension_end
        end = size - plain[size - 1] if first & 0x20 else size
        if pos > end:
            return
        now = self._clock()
        self.packets += 1
        self.octets += size
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self.streams[ssrc] = self._new_stream(ssrc, second & 0x7F)
            stream.first_at = now
            self._mark("first_rtp")
        stream.packets += 1
        stream.octets += size
        if self.twcc_id and extension_end:
            value = _one_byte_extension(header, extension_start, extension_end, self.twcc_id)
            if value >= 0:
                self.feedback.on_packet(value, int(now * 1e6))
        if stream.rtx:
            return
        # --- RFC 3550 A.1/A.8: extended highest sequence number, loss and jitter
        stream.packets_received += 1
        max_seq = stream.max_seq
        if max_seq < 0:
            stream.base_seq = stream.max_seq = seq
            in_order = True
        else:
            delta = (seq - max_seq) & 0xFFFF
            in_order = 0 < delta < 0x8000
            if in_order:
                if seq < max_seq:
                    stream.cycles += 0x10000
                if delta > 1 and stream.kind == "video":
                    self._gap(stream, stream.cycles + seq, delta)
                stream.max_seq = seq
            elif stream.missing:  # late, reordered or retransmitted: no longer missing
                extended = stream.cycles + seq - (0x10000 if seq > max_seq else 0)
                stream.missing.pop(extended, None)
        if in_order:
            arrival = now * stream.clock_rate
            if timestamp != stream.last_timestamp:
                if stream.last_timestamp >= 0:
                    ticks = (timestamp - stream.last_timestamp) & 0xFFFFFFFF
                    if ticks >= 0x80000000:
                        ticks -= 0x100000000
                    difference = abs(arrival - stream.last_arrival - ticks)
                    stream.jitter_q4 += difference - stream.jitter_q4 / 16
                stream.last_arrival = arrival
                stream.last_timestamp = timestamp
        if stream.kind != "video":
            return
        # VP8: only a packet that starts partition 0 (S=1, PID=0) can start a keyframe.
        if stream.vp8 and pos < end and plain[pos] & 0x17 == 0x10:
            packet = bytes(plain[:end])  # one frame in ~30: the copy costs nothing
            descriptor = parse_descriptor(packet, pos, end)
            if descriptor is not None:
                resolution = keyframe_size(packet, descriptor, end)
                if resolution is not None:
                    stream.resolution = resolution
                    stream.keyframes += 1
                    self._mark("first_keyframe")
        if second & 0x80:  # marker: the frame is complete
            last = stream.last_frame_at
            if last is not None and now - last > FREEZE_GAP:
                stream.freezes += 1
                stream.freeze_seconds += now - last
            stream.last_frame_at = now
            stream.frames += 1

    def _gap(self, stream: ReceivedStream, extended: int, delta: int) -> None:
        """Packets ``extended - delta + 1 .. extended - 1`` are missing: NACK them soon."""
        missing = stream.missing
        for lost in range(extended - min(delta - 1, NACK_HISTORY), extended):
            missing[lost] = 0
        if len(missing) > NACK_HISTORY:
            for old in sorted(missing)[:len(missing) - NACK_HISTORY]:
                del missing[old]
        self.nack_due = True


class DirectReceive:
    """The socket's datagram callback after the handshake (uvloop calls it directly).

    SRTP goes through ``srtp_unprotect`` on one reused buffer (pylibsrtp's own
    ``Session.unprotect`` allocates an ``int *`` and a result per call) and
    into ``RtpCounter.count``. STUN (consent checks), DTLS and SRTCP keep
    aiortc's path, so ICE and RTCP behave as before.
    """

    def __init__(self, session: pylibsrtp.Session, counter: RtpCounter,
                 fallback: Callable[[bytes, Any], None]) -> None:
        srtp = getattr(session, "_srtp", None)
        if srtp is None:
            raise RuntimeError("pylibsrtp.Session has no _srtp context: its internals changed")
        self._session = session  # owns the libsrtp context
        self._context = srtp[0]
        self._buffer = bytearray(MAX_DATAGRAM)
        self._pointer = ffi.from_buffer(self._buffer)
        self._length = ffi.new("int *")
        self._counter = counter
        self._fallback = fallback
        self.rejected = 0  # failed authentication or replay check (duplicates)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        size = len(data)
        # RTP (version 2) but not RTCP (RFC 5761: payload types 192-223 are RTCP)
        if 127 < data[0] < 192 and not 191 < data[1] < 224 and size <= MAX_DATAGRAM:
            buffer = self._buffer
            buffer[:size] = data
            length = self._length
            length[0] = size
            if lib.srtp_unprotect(self._context, self._pointer, length):
                self.rejected += 1
                return
            counter = self._counter
            counter.direct += 1
            counter.count(data, buffer, length[0])
        else:
            self._fallback(data, addr)


class RtcpTicker:
    """One timer per event loop for every participant's periodic RTCP.

    A timer per participant costs a wake-up each (tens of µs with its task
    step); hundreds of participants per process would spend more on waking
    up than on their packets. Each registered ``tick`` coroutine is awaited
    every ``interval`` seconds with the tick's number.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RtcpTicker] = (
        weakref.WeakKeyDictionary())

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._clients: dict[int, Callable[[int], Awaitable[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.failures = 0
        self.last_failure = ""

    @classmethod
    def for_loop(cls, interval: float) -> RtcpTicker:
        loop = asyncio.get_running_loop()
        ticker = cls._by_loop.get(loop)
        if ticker is None:
            ticker = cls._by_loop[loop] = cls(interval)
        return ticker

    def add(self, key: int, tick: Callable[[int], Awaitable[None]]) -> None:
        self._clients[key] = tick
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def remove(self, key: int) -> None:
        self._clients.pop(key, None)

    async def _run(self) -> None:
        while self._clients:
            await asyncio.sleep(self.interval)
            self.ticks += 1
            for tick in list(self._clients.values()):
                try:
                    await tick(self.ticks)
                except ConnectionError:
                    pass  # the participant is leaving; it removes itself
                except Exception as exc:  # one participant's bug must not stop the others'
                    self.failures += 1
                    self.last_failure = f"{type(exc).__name__}: {exc}"
