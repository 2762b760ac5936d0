"""The light participant's receive path: a few header fields and counters per SRTP packet.

aiortc's receive path costs 20-45 µs per packet (``../shared/research/aiortc.md``
§5: aioice tries every datagram as STUN and queues it, the DTLS transport's
coroutine awaits it, pylibsrtp allocates per call, ``RtpPacket.parse`` builds
objects). A load-test subscriber only needs counts, so after the handshake
the participant reads its ICE socket itself (``loadtest.srtp_socket``):

* ``recv_into`` one reused buffer (one epoll set for every participant's
  socket); libsrtp's ``srtp_unprotect`` is called on that buffer straight
  through pylibsrtp's cffi binding (authenticated and decrypted in place, as
  a browser would; no object per packet) for the packets described below;
* sequence number, timestamp, SSRC, marker and the transport-cc extension
  are read from the header; the payload is looked at only for a VP8 packet
  that may start a keyframe;
* per-SSRC counters (RFC 3550 loss and jitter, frames, freezes) are updated
  in place (``RtpCounter.count``), with no object built per packet.

Sender reports from the SFU are read on the same path (for the LSR/DLSR of
receiver reports). The RTCP a browser sends is built from these counters *on
a timer*, never per packet: ``sfu.ticker.Ticker`` runs one timer per event
loop that sends every participant's receiver reports, NACKs (when
``on_loss`` asks) and transport-cc feedback. This module is the counting part.

**Which SRTP packets are decrypted.** SRTP encrypts the payload only; the
header (sequence number, timestamp, SSRC, marker, header extensions such as
transport-cc) stays in clear, and everything counted here but the key frame
check comes from it: loss, NACKs, jitter, frames, freezes, bytes,
transport-cc arrivals. So ``count`` asks the demux to authenticate and
decrypt (``srtp.unprotect``) only:

* a video frame's first packet as it arrives: any packet whose timestamp is
  not the one of the frame whose first packet was decrypted
  (``ReceivedStream.frame_timestamp``), or that is not exactly the next
  sequence number (after a gap; a late, reordered or retransmitted packet,
  which may be a frame's lost first packet); it is the only one whose VP8
  payload may start a key frame;
* every packet of audio, RTX and unknown streams, every new stream's first
  packet, and every packet with the padding bit (the padding length is the
  payload's encrypted last byte);
* one packet in 16 of each stream (``VERIFY_EVERY_MASK``) besides, so that a
  wrong key or a corrupted stream still shows as ``SrtpDemux.rejected``.

The other packets (with 5 packets per video frame, ≈ 3 in 4) are counted
from the header, their size less the SRTP trailer learnt from the decrypted
ones. That is honest for a load generator: it is not a security boundary
(it trusts the SFU it measures, on a link it chose), every packet whose
payload is read is authenticated and decrypted as a browser would, and so is
a sample of the rest; what is skipped is CPU spent on bytes nobody looks at.
libsrtp still sees every frame's first packet and one in 16: its rollover
counter guess only needs fewer than 2^15 sequence numbers between two
decrypted packets, and its replay window moves forward over the skipped
ones (tests/loadtest/test_rtp_receive.py sends 72,000 packets across a
wrap). ``SrtpDemux.verified`` counts the decrypted packets.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Protocol

from loadtest.twcc_feedback import TransportFeedbackGenerator
from sfu.vp8 import keyframe_size, parse_descriptor

FREEZE_GAP = 0.5  # s without a completed video frame
NACK_HISTORY = 128  # newest missing packets tracked per stream (aiortc's RTP_HISTORY_SIZE)
NACK_RETRIES = 5  # a missing packet is asked for at most this often
NACK_RETRY_TICKS = 4  # ticks between two NACKs of the same packet
MAX_NACKED = 64  # sequence numbers per NACK message
# With SRTP, one packet in 16 of each stream is authenticated and decrypted even when
# its header alone is enough (see the module docstring).
VERIFY_EVERY_MASK = 15
_FIXED_HEADER = struct.Struct("!BBHII")
_SR_FIELDS = struct.Struct("!I2xI")  # sender SSRC, skip 2 bytes of NTP seconds, middle 32 bits
_REPORT_BLOCK = struct.Struct("!IIIIII")


class Unprotect(Protocol):
    def unprotect(self, size: int) -> int:
        """Authenticate and decrypt the packet in place: its plain size, or -1 if rejected."""


class ReceivedStream:
    """One received SSRC: what a browser counts for it, updated in place per packet.

    ``packets_expected``, ``packets_lost``, ``fraction_lost`` and ``jitter``
    follow RFC 3550 appendix A.3 (and the names of aiortc's
    ``StreamStatistics``); ``RtpCounter.receiver_report`` puts them in RRs.
    """

    __slots__ = (
        "base_seq", "clock_rate", "cycles", "expected_prior", "first_at", "frame_timestamp",
        "frames", "freeze_seconds", "freezes", "jitter_q4", "keyframes", "kind", "last_arrival",
        "last_frame_at", "last_timestamp", "max_seq", "mid", "missing", "nacks_sent", "octets",
        "packets", "received_prior", "resolution", "rtx", "ssrc", "vp8",
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
        self.jitter_q4 = 0.0  # RFC 3550 interarrival jitter x 16, in clock units
        self.last_arrival = 0.0
        self.last_timestamp = -1
        # the timestamp of the video frame whose first packet was authenticated and
        # decrypted: its later packets, in sequence, may be counted from the header
        self.frame_timestamp = -1
        self.expected_prior = 0
        self.received_prior = 0
        self.missing: dict[int, int] = {}  # extended sequence number -> NACKs sent for it

    # --- what a receiver report carries (RFC 3550 appendix A.3)
    @property
    def packets_received(self) -> int:
        """Every packet but RTX's, duplicates and late ones included (as RFC 3550 A.3)."""
        return 0 if self.rtx else self.packets

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


def no_loss_listener() -> None:
    """Nobody sends NACKs for this counter (not yet, or no longer)."""


class RtpCounter:
    """Counts RTP packets per SSRC from their header (and a VP8 payload's first bytes)."""

    def __init__(self, new_stream: Callable[[int, int], ReceivedStream],
                 mark: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.streams: dict[int, ReceivedStream] = {}
        self.plain = 0  # packets counted already decrypted (aiortc's path, before the takeover)
        self.srtp_trailer = 0  # bytes of SRTP auth tag, learnt from each decrypted packet
        self.twcc_id = 0  # the transport-cc extension's id; 0 when not negotiated
        self.feedback = TransportFeedbackGenerator()
        self.on_loss: Callable[[], None] = no_loss_listener  # a stream has new missing packets
        self.sender_reports = 0
        # SSRC -> (middle 32 bits of the last sender report's NTP time, when it arrived)
        self.last_sr: dict[int, tuple[int, float]] = {}
        self._new_stream = new_stream
        self._mark = mark
        self._clock = clock

    @property
    def packets(self) -> int:
        return sum(stream.packets for stream in self.streams.values())

    @property
    def octets(self) -> int:
        """RTP bytes without the SRTP trailer."""
        return sum(stream.octets for stream in self.streams.values())

    @property
    def direct(self) -> int:
        """Packets that came through an ``SrtpDemux`` (``loadtest.srtp_socket``)."""
        return self.packets - self.plain

    def count(self, data: bytes | bytearray, size: int,
              srtp: Unprotect | None = None) -> None:
        """One RTP packet, ``data[:size]`` (a reused buffer on the direct path).

        Without ``srtp`` the packet is already decrypted (aiortc's path).
        With it, ``data`` is the SRTP packet as received: ``srtp.unprotect``
        authenticates and decrypts it in place (see the module docstring for
        which packets), or the packet is counted from its clear header alone.
        """
        if size < 12:
            return
        first, second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
        if first & 0xC0 != 0x80:  # version 2
            return
        stream = self.streams.get(ssrc)
        pos = 12 + 4 * (first & 0x0F)  # the header is in clear: read before any decryption
        extension_start = extension_end = 0
        if first & 0x10:
            if size < pos + 4:
                return
            extension_start = pos + 4
            extension_end = extension_start + 4 * (data[pos + 2] << 8 | data[pos + 3])
            pos = extension_end
        clear = True  # the payload is readable
        if srtp is not None:
            if (stream is None or timestamp != stream.frame_timestamp
                    or seq != stream.max_seq + 1 or first & 0x20
                    or not stream.packets & VERIFY_EVERY_MASK):
                plain = srtp.unprotect(size)
                if plain < 0:  # rejected: counted by the demux, nowhere here
                    return
                self.srtp_trailer = size - plain
                size = plain
            else:  # a later packet, in sequence, of a frame whose first packet was verified
                size -= self.srtp_trailer
                if not self.twcc_id:
                    # Most packets (≈ 3 in 4): no arrival time to report, no loss, no new
                    # timestamp (so no jitter sample), no key frame; the counters and the
                    # marker are all there is.
                    if pos > size:
                        return
                    stream.packets += 1
                    stream.octets += size
                    stream.max_seq = seq
                    if second & 0x80:
                        self._frame_completed(stream, self._clock())
                    return
                clear = False
        end = size - data[size - 1] if first & 0x20 else size  # padded: always decrypted
        if pos > end:
            return
        if srtp is None:
            self.plain += 1
        now = 0.0  # read from the clock only when needed
        if stream is None:
            stream = self.streams[ssrc] = self._new_stream(ssrc, second & 0x7F)
            stream.first_at = now = self._clock()
            self._mark("first_rtp")
        stream.packets += 1
        stream.octets += size
        if self.twcc_id and extension_end:
            twcc_id = self.twcc_id
            element = data[extension_start]
            # the usual case: transport-cc is the first element of a one-byte extension
            if element == twcc_id << 4 | 1 and data[extension_start - 4] == 0xBE:
                value = data[extension_start + 1] << 8 | data[extension_start + 2]
            else:
                value = _one_byte_extension(data, extension_start, extension_end, twcc_id)
            if value >= 0:
                now = now or self._clock()
                self.feedback.on_packet(value, int(now * 1e6))
        if stream.rtx:
            return
        # --- RFC 3550 A.1/A.8: extended highest sequence number, loss and jitter
        max_seq = stream.max_seq
        if max_seq < 0:
            stream.base_seq = stream.max_seq = seq
            in_order = True
        elif seq == max_seq + 1:  # the usual case: the next one, no wrap
            stream.max_seq = seq
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
        if in_order and timestamp != stream.last_timestamp:
            now = now or self._clock()
            arrival = now * stream.clock_rate
            if stream.last_timestamp >= 0:
                ticks = (timestamp - stream.last_timestamp) & 0xFFFFFFFF
                if ticks >= 0x80000000:
                    ticks -= 0x100000000
                difference = abs(arrival - stream.last_arrival - ticks)
                stream.jitter_q4 += difference - stream.jitter_q4 / 16
            stream.last_arrival = arrival
            stream.last_timestamp = timestamp
            if srtp is not None and stream.kind == "video":
                stream.frame_timestamp = timestamp  # verified: its later packets need not be
        if stream.kind != "video":
            return
        # VP8: only a packet that starts partition 0 (S=1, PID=0) of a frame whose payload
        # header has P=0 is a key frame; every frame's first packet passes the first test.
        if (clear and stream.vp8 and pos < end and data[pos] & 0x17 == 0x10
                and _vp8_key_frame_bit(data, pos, end)):
            packet = bytes(data[:end])  # once per key frame
            descriptor = parse_descriptor(packet, pos, end)
            if descriptor is not None:
                resolution = keyframe_size(packet, descriptor, end)
                if resolution is not None:
                    stream.resolution = resolution
                    stream.keyframes += 1
                    self._mark("first_keyframe")
        if second & 0x80:  # marker: the frame is complete
            self._frame_completed(stream, now or self._clock())

    @staticmethod
    def _frame_completed(stream: ReceivedStream, now: float) -> None:
        """A video frame's last packet (marker bit) arrived ``now``: a frame, or a freeze."""
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
        self.on_loss()
