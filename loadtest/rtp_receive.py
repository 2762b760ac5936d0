"""The light participant's receive path: a few header fields and counters per SRTP packet.

aiortc's receive path costs 20-45 µs per packet (``../shared/research/aiortc.md``
§5: aioice tries every datagram as STUN and queues it, the DTLS transport's
coroutine awaits it, pylibsrtp allocates per call, ``RtpPacket.parse`` builds
objects). A load-test subscriber only needs counts, so after the handshake
the participant reads its ICE socket itself (``SocketReader``):

* ``recv_into`` one reused buffer (one epoll set for every participant's
  socket, ``ReceivePoller``); libsrtp's
  ``srtp_unprotect`` is called on that buffer straight through pylibsrtp's
  cffi binding (authenticated and decrypted in place, as a browser would;
  no object per packet);
* sequence number, timestamp, SSRC, marker and the transport-cc extension
  are read from the header; the payload is looked at only for a VP8 packet
  that may start a keyframe;
* per-SSRC counters (RFC 3550 loss and jitter, frames, freezes) are updated
  in place (``RtpCounter.count``), with no object built per packet.

Sender reports from the SFU are read on the same path (for the LSR/DLSR of
receiver reports). The RTCP a browser sends is built from these counters *on
a timer*, never per packet: ``RtcpTicker`` runs one timer per event loop that
sends every participant's receiver reports, NACKs and transport-cc feedback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi, lib

from loadtest.twcc_feedback import TransportFeedbackGenerator
from sfu.vp8 import keyframe_size, parse_descriptor

FREEZE_GAP = 0.5  # s without a completed video frame
MAX_DATAGRAM = 2048  # bytes; a bigger datagram takes aiortc's path
RECEIVE_BUFFER = 1 << 20  # bytes asked for each taken-over socket (net.core.rmem_max caps it)
NACK_HISTORY = 128  # newest missing packets tracked per stream (aiortc's RTP_HISTORY_SIZE)
NACK_RETRIES = 5  # a missing packet is asked for at most this often
NACK_RETRY_TICKS = 4  # ticks between two NACKs of the same packet
MAX_NACKED = 64  # sequence numbers per NACK message
_FIXED_HEADER = struct.Struct("!BBHII")
_SR_FIELDS = struct.Struct("!I2xI")  # sender SSRC, skip 2 bytes of NTP seconds, middle 32 bits
_REPORT_BLOCK = struct.Struct("!IIIIII")


class ReceivedStream:
    """One received SSRC: what a browser counts for it, updated in place per packet.

    ``packets_expected``, ``packets_lost``, ``fraction_lost`` and ``jitter``
    follow RFC 3550 appendix A.3 (and the names of aiortc's
    ``StreamStatistics``); ``RtpCounter.receiver_report`` puts them in RRs.
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

    # --- what a receiver report carries (RFC 3550 appendix A.3)
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


def _one_byte_extension(data: bytes | bytearray, pos: int, end: int, wanted: int) -> int:
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


def _vp8_key_frame_bit(data: bytes | bytearray, pos: int, end: int) -> bool:
    """Whether the VP8 payload header after the descriptor at ``pos`` says key frame (P=0).

    RFC 7741 §4.2: X, then I (7 or 15-bit picture id), L (TL0PICIDX), T/K
    (one byte); ``sfu.vp8.parse_descriptor`` then confirms with all fields.
    """
    offset = pos + 1
    if data[pos] & 0x80:
        if offset >= end:
            return False
        extension = data[offset]
        offset += 1
        if extension & 0x80:
            if offset >= end:
                return False
            offset += 2 if data[offset] & 0x80 else 1
        if extension & 0x40:
            offset += 1
        if extension & 0x30:
            offset += 1
    return offset < end and not data[offset] & 0x01


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
        self.sender_reports = 0
        # SSRC -> (middle 32 bits of the last sender report's NTP time, when it arrived)
        self.last_sr: dict[int, tuple[int, float]] = {}
        self._new_stream = new_stream
        self._mark = mark
        self._clock = clock

    def count(self, header: bytes | bytearray, size: int) -> None:
        """One decrypted RTP packet, ``header[:size]`` (a reused buffer on the direct path)."""
        plain = header
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
        twcc_id = self.twcc_id
        if twcc_id and extension_end:
            element = header[extension_start]
            # the usual case: transport-cc is the first element of a one-byte extension
            if element == twcc_id << 4 | 1 and header[extension_start - 4] == 0xBE:
                value = header[extension_start + 1] << 8 | header[extension_start + 2]
            else:
                value = _one_byte_extension(header, extension_start, extension_end, twcc_id)
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
        # VP8: only a packet that starts partition 0 (S=1, PID=0) of a frame whose payload
        # header has P=0 is a key frame; every frame's first packet passes the first test.
        if (stream.vp8 and pos < end and plain[pos] & 0x17 == 0x10
                and _vp8_key_frame_bit(plain, pos, end)):
            packet = bytes(plain[:end])  # once per key frame
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

    def on_rtcp(self, data: bytes | bytearray, size: int) -> None:
        """A decrypted compound RTCP packet: remember each sender report for LSR/DLSR."""
        pos = 0
        now = self._clock()
        while pos + 8 <= size:
            packet_type = data[pos + 1]
            end = pos + 4 * ((data[pos + 2] << 8 | data[pos + 3]) + 1)
            if end > size:
                return
            if packet_type == 200 and end - pos >= 28:  # SR: the NTP time's middle 32 bits
                ssrc, ntp_middle = _SR_FIELDS.unpack_from(data, pos + 4)
                self.last_sr[ssrc] = (ntp_middle, now)
                self.sender_reports += 1
            pos = end

    def receiver_report(self, sender_ssrc: int) -> bytes | None:
        """An RTCP RR for up to 31 received streams (RTX excluded), or None if none."""
        now = self._clock()
        blocks = []
        for stream in self.streams.values():
            if stream.rtx or stream.base_seq < 0:
                continue
            lsr, at = self.last_sr.get(stream.ssrc, (0, now))
            dlsr = int((now - at) * 65536) if lsr else 0
            blocks.append(_REPORT_BLOCK.pack(
                stream.ssrc, stream.fraction_lost << 24 | stream.packets_lost & 0xFFFFFF,
                (stream.cycles + stream.max_seq) & 0xFFFFFFFF, stream.jitter & 0xFFFFFFFF,
                lsr, min(dlsr, 0xFFFFFFFF)))
            if len(blocks) == 31:
                break
        if not blocks:
            return None
        header = struct.pack("!BBHI", 0x80 | len(blocks), 201, 1 + 6 * len(blocks), sender_ssrc)
        return header + b"".join(blocks)

    def _gap(self, stream: ReceivedStream, extended: int, delta: int) -> None:
        """Packets ``extended - delta + 1 .. extended - 1`` are missing: NACK them soon."""
        missing = stream.missing
        for lost in range(extended - min(delta - 1, NACK_HISTORY), extended):
            missing[lost] = 0
        if len(missing) > NACK_HISTORY:
            for old in sorted(missing)[:len(missing) - NACK_HISTORY]:
                del missing[old]
        self.nack_due = True


class Scratch:
    """A datagram's buffer, its cffi pointer and libsrtp's length cell.

    Handling a datagram is synchronous (read, decrypt, count, done), so all
    the sockets of one event loop share one: it stays in the CPU's cache
    where one buffer per participant would not.
    """

    def __init__(self) -> None:
        self.buffer = bytearray(MAX_DATAGRAM)
        self.pointer = ffi.from_buffer(self.buffer)
        self.length = ffi.new("int *")


class SrtpDemux:
    """Decrypts one datagram in place in a reused buffer and hands it to an ``RtpCounter``.

    ``srtp_unprotect`` / ``srtp_unprotect_rtcp`` are called straight through
    pylibsrtp's cffi binding (its ``Session.unprotect`` allocates an ``int *``
    and a result per call). SRTP leaves the RTP header in clear and decrypts
    the payload in place, so the buffer then holds the whole plain packet.
    SRTCP goes to ``RtpCounter.on_rtcp`` (sender reports: aiortc's path costs
    ~150 µs for each, through a queue, a task and statistics objects). STUN
    (consent checks) and DTLS (RFC 7983: first byte not 128-191) go to
    ``fallback``, aioice's own handler.
    """

    def __init__(self, session: pylibsrtp.Session, counter: RtpCounter,
                 fallback: Callable[[bytes, Any], None],
                 scratch: Scratch | None = None) -> None:
        srtp = getattr(session, "_srtp", None)
        if srtp is None:
            raise RuntimeError("pylibsrtp.Session has no _srtp context: its internals changed")
        self._session = session  # owns the libsrtp context
        self._context = srtp[0]
        scratch = scratch or Scratch()
        self.buffer, self._pointer, self._length = scratch.buffer, scratch.pointer, scratch.length
        self._counter = counter
        self._fallback = fallback
        self.rejected = 0  # failed authentication or replay check (duplicates)

    def handle(self, size: int, addr: Any) -> None:
        """The datagram now in ``buffer[:size]``."""
        buffer = self.buffer
        if not 127 < buffer[0] < 192:
            self._fallback(bytes(buffer[:size]), addr)
            return
        length = self._length
        length[0] = size
        if 191 < buffer[1] < 224:  # RTCP (RFC 5761: packet types 192-223)
            if lib.srtp_unprotect_rtcp(self._context, self._pointer, length):
                self.rejected += 1
            else:
                self._counter.on_rtcp(buffer, length[0])
            return
        if lib.srtp_unprotect(self._context, self._pointer, length):
            self.rejected += 1
            return
        counter = self._counter
        counter.direct += 1
        counter.count(buffer, length[0])


class DirectReceive(SrtpDemux):
    """A datagram protocol's ``datagram_received`` replaced: uvloop hands each datagram."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        size = len(data)
        if size > MAX_DATAGRAM:
            self._fallback(data, addr)
            return
        self.buffer[:size] = data
        self.handle(size, addr)


def _original(module: str, name: str) -> Any:
    """``module.name`` as Python made it: locust workers run under gevent, whose monkey
    patching replaces ``socket.socket`` with a cooperative one (useless on this asyncio
    thread) and removes ``select.epoll``."""
    try:
        from gevent import monkey
    except ImportError:
        return getattr(importlib.import_module(module), name)
    return monkey.get_original(module, name)


class SocketReader(SrtpDemux):
    """The ICE socket taken over after the handshake: read with ``recv_into``, in place.

    uvloop builds a ``bytes`` and an address tuple for every datagram and
    calls the protocol with them; here a duplicate of the socket's file
    descriptor is read by this object straight into the SRTP buffer, and
    uvloop's transport is closed (the socket lives on through the duplicate).
    aioice keeps its protocol object: it sends through this object
    (``sendto``) and gets STUN and DTLS datagrams from it, with the selected
    pair's remote address. The process's ``ReceivePoller`` says when to read.
    """

    def __init__(self, protocol: Any, remote_addr: tuple[str, int],
                 session: pylibsrtp.Session, counter: RtpCounter) -> None:
        # Everything that can fail happens before uvloop's transport is let go.
        self._poller = ReceivePoller.for_loop()
        super().__init__(session, counter, protocol.datagram_received, self._poller.scratch)
        self._protocol = protocol
        self._remote_addr = remote_addr
        self._loop = asyncio.get_running_loop()
        uvloop_transport = protocol.transport
        fileno = uvloop_transport.get_extra_info("socket").fileno()
        self._socket = _original("socket", "socket")(fileno=os.dup(fileno))
        self._socket.setblocking(False)
        # A load generator descheduled for a moment on a busy host must not turn its own
        # stall into loss charged to the SFU: ~2 s of video instead of the default ~0.6 s.
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._closed = False
        uvloop_transport.set_protocol(asyncio.DatagramProtocol())  # its close is not aioice's
        protocol.transport = self
        uvloop_transport.close()
        self._poller.add(self._socket.fileno(), self.read_one)

    def read_one(self) -> None:
        """One datagram (the poller calls again while the socket stays readable)."""
        try:
            size = self._socket.recv_into(self.buffer)
        except OSError:  # EAGAIN (raced), or an ICMP error reported on the socket
            return
        self.handle(size, self._remote_addr)

    # --- the part of asyncio.DatagramTransport aioice uses
    def sendto(self, data: bytes, addr: Any = None) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._socket.sendto(data, addr or self._remote_addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._socket.getsockname()
        return self._socket if name == "socket" else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._poller.remove(self._socket.fileno())
        self._socket.close()
        self._loop.call_soon(self._protocol.connection_lost, None)


class ReceivePoller:
    """Every taken-over socket of one event loop behind a single epoll set.

    uvloop wakes up for the epoll set's descriptor; one callback then asks the
    set which sockets are readable and reads one datagram from each, again
    until none is (level-triggered: a socket with more waiting stays ready).
    With hundreds of participants a wake-up finds many sockets with one or
    two datagrams each; one uvloop callback per socket and a failed
    ``recv`` per socket to learn it is empty would cost more than the packet.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReceivePoller] = (
        weakref.WeakKeyDictionary())
    MAX_ROUNDS = 64  # then back to the event loop, so timers and signaling run

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.scratch = Scratch()  # one datagram buffer for every socket of this loop
        self._epoll = _original("select", "epoll")()
        self._readers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    @classmethod
    def for_loop(cls) -> ReceivePoller:
        loop = asyncio.get_running_loop()
        poller = cls._by_loop.get(loop)
        if poller is None:
            poller = cls._by_loop[loop] = cls(loop)
        return poller

    def add(self, fileno: int, read_one: Callable[[], None]) -> None:
        self._readers[fileno] = read_one
        self._epoll.register(fileno, _original("select", "EPOLLIN"))

    def remove(self, fileno: int) -> None:
        if self._readers.pop(fileno, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fileno)
        if not self._readers:  # the last one: the next reader of this loop starts afresh
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            if self._by_loop.get(self._loop) is self:
                del self._by_loop[self._loop]

    def _ready(self) -> None:
        poll, readers = self._epoll.poll, self._readers
        for _ in range(self.MAX_ROUNDS):
            events = poll(0)
            if not events:
                return
            for fileno, _mask in events:
                read_one = readers.get(fileno)
                if read_one is not None:
                    read_one()


class RtcpTicker:
    """One timer per event loop for every participant's periodic RTCP.

    A timer per participant costs a wake-up and a task step each; hundreds
    of participants per process would spend more on waking up than on their
    packets. Each registered ``tick`` (synchronous: it only decides and
    sends) is called every ``interval`` seconds with the tick's number.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RtcpTicker] = (
        weakref.WeakKeyDictionary())

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._clients: dict[int, Callable[[int], None]] = {}
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

    def add(self, key: int, tick: Callable[[int], None]) -> None:
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
                    tick(self.ticks)
                except (ConnectionError, OSError):
                    pass  # the participant is leaving; it removes itself
                except Exception as exc:  # one participant's bug must not stop the others'
                    self.failures += 1
                    self.last_failure = f"{type(exc).__name__}: {exc}"
