"""Raw RTP header reading and writing for the forwarding path.

aiortc's ``RtpPacket.parse`` costs 7-8 µs and drops header extensions it does
not know; the SFU reads only the fixed header and the extensions it needs,
straight from the decrypted bytes, and writes a fresh header per subscriber.
RFC 3550 §5.1 (fixed header), RFC 8285 (header extensions).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000

_FIXED_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class MalformedPacket(ValueError):
    """An RTP or RTCP packet that cannot be read; the packet is dropped, the stream lives on."""


def is_rtcp_packet(data: bytes) -> bool:
    """RFC 5761 §4: RTCP packet types 192-223 share the second byte with RTP marker+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpHeader:
    """The parts of one RTP packet the SFU reads, with offsets into its bytes."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    extensions: dict[int, bytes]
    payload_start: int
    payload_end: int

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.payload_start


def parse_header(data: bytes) -> RtpHeader:
    """Read the fixed header, CSRCs, header extensions and padding of ``data``.

    Raises ``MalformedPacket`` for anything a conforming sender cannot produce,
    so that hostile input never reaches the forwarding logic.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise MalformedPacket(f"RTP packet of {size} bytes is shorter than its header")
    first, second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise MalformedPacket(f"RTP version {first >> 6} is not 2")
    pos = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    extensions: dict[int, bytes] = {}
    if first & 0x10:
        if size < pos + 4:
            raise MalformedPacket("RTP header extension is truncated")
        profile, length = _EXT_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * length
        if size < end:
            raise MalformedPacket("RTP header extension block is truncated")
        extensions = _parse_extensions(profile, data, pos, end)
        pos = end
    payload_end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or pos + padding > size:
            raise MalformedPacket(f"RTP padding of {padding} bytes is invalid")
        payload_end = size - padding
    if pos > payload_end:
        raise MalformedPacket("RTP header is longer than the packet")
    return RtpHeader(
        marker=bool(second & 0x80),
        payload_type=second & 0x7F,
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        extensions=extensions,
        payload_start=pos,
        payload_end=payload_end,
    )


def _parse_extensions(profile: int, data: bytes, pos: int, end: int) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            byte = data[pos]
            if byte == 0:
                pos += 1
                continue
            ext_id = byte >> 4
            if ext_id == 15:  # RFC 8285 §4.2: stop parsing
                break
            length = (byte & 0x0F) + 1
            pos += 1
            if pos + length > end:
                raise MalformedPacket("one-byte header extension value is truncated")
            extensions[ext_id] = data[pos : pos + length]
            pos += length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > end:
                raise MalformedPacket("two-byte header extension is truncated")
            length = data[pos + 1]
            pos += 2
            if pos + length > end:
                raise MalformedPacket("two-byte header extension value is truncated")
            extensions[ext_id] = data[pos : pos + length]
            pos += length
    return extensions


def pack_extensions(extensions: list[tuple[int, bytes]]) -> bytes:
    """Serialise header extensions as the block that follows the fixed header.

    One-byte form when every id is 1-14 and every value 1-16 bytes, else
    two-byte form (RFC 8285 §4.3). Returns b"" when there is nothing to send.
    """
    if not extensions:
        return b""
    one_byte = all(0 < ext_id < 15 and 0 < len(value) <= 16 for ext_id, value in extensions)
    if one_byte:
        profile = ONE_BYTE_PROFILE
        body = b"".join(bytes(((ext_id << 4) | (len(value) - 1),)) + value
                        for ext_id, value in extensions)
    else:
        profile = TWO_BYTE_PROFILE
        body = b"".join(bytes((ext_id, len(value))) + value for ext_id, value in extensions)
    body += b"\x00" * (-len(body) % 4)
    return _EXT_HEADER.pack(profile, len(body) // 4) + body


def pack_header(
    *,
    marker: bool,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extension_block: bytes,
    padded: bool = False,
) -> bytes:
    """Write a fixed RTP header (no CSRCs) followed by an extension block."""
    first = 0x80 | (0x10 if extension_block else 0) | (0x20 if padded else 0)
    second = (0x80 if marker else 0) | payload_type
    return _FIXED_HEADER.pack(first, second, sequence_number, timestamp, ssrc) + extension_block


def padding_packet(*, payload_type: int, sequence_number: int, timestamp: int, ssrc: int,
                   extension_block: bytes, padding: int) -> bytes:
    """A packet made only of padding (RFC 3550 §5.1): bandwidth probes, dropped by receivers."""
    if not 1 <= padding <= 255:
        raise ValueError("padding must be 1-255 bytes")
    header = pack_header(marker=False, payload_type=payload_type,
                         sequence_number=sequence_number, timestamp=timestamp, ssrc=ssrc,
                         extension_block=extension_block, padded=True)
    return header + bytes(padding - 1) + bytes((padding,))


def abs_send_time_now(now_seconds: float) -> bytes:
    """abs-send-time: 6.18 fixed-point seconds, 24 bits (webrtc.org experiment extension)."""
    return (int(now_seconds * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def abs_send_time_value(raw: bytes) -> int:
    """The 24-bit abs-send-time as an integer (0 when the extension is malformed)."""
    return int.from_bytes(raw, "big") if len(raw) == 3 else 0


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` comes after ``b`` (RFC 1982 arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
