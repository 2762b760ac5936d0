"""What a subscriber's RTCP asks of the SFU, read from the decrypted compound packet.

A subscriber sends receiver reports, NACKs, keyframe requests (PLI, FIR),
REMB and transport-cc feedback. The SFU reads them itself, in the socket's
callback, instead of through aiortc: aiortc's path parses every packet into
objects, routes it through its transport's task, and builds statistics from
each receiver report that visio never reads (it never calls getStats). It
also parses transport-cc feedback as a NACK and loses its FCI.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sfu.rtp import MalformedPacket
from sfu.twcc import RTCP_RTPFB, RTCP_VERSION, TRANSPORT_CC_FMT

RTCP_PSFB = 206  # RFC 4585 §6.1: payload-specific feedback
RTPFB_NACK = 1  # RFC 4585 §6.2.1: generic NACK
PSFB_PLI = 1  # RFC 4585 §6.3.1
PSFB_FIR = 4  # RFC 5104 §4.3.1
PSFB_AFB = 15  # RFC 4585 §6.4: application layer feedback, here REMB
REMB_IDENTIFIER = b"REMB"  # draft-alvestrand-rmcat-remb-03 §2.2
FEEDBACK_HEADER_SIZE = 12  # common header, sender SSRC, media source SSRC
FIR_ENTRY_SIZE = 8  # SSRC, command sequence number, reserved
NACK_ENTRY_SIZE = 4  # PID, BLP

_RTCP_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_NACK_ENTRY = struct.Struct("!HH")


class MalformedRtcp(MalformedPacket):
    """RTCP that cannot be read; the whole compound packet is dropped, the transport lives on."""


@dataclass(frozen=True, slots=True)
class SubscriberFeedback:
    """What a subscriber asked about one m-line, in the SFU's own terms."""

    keyframe: bool = False  # PLI or FIR
    lost: tuple[int, ...] = ()  # generic NACK: sequence numbers as the subscriber saw them
    estimated_bitrate: int | None = None  # REMB


@dataclass(slots=True)
class SubscriberRtcp:
    """One compound packet's requests, by the media SSRC they name, and its transport-cc FCIs."""

    feedback: list[tuple[int, SubscriberFeedback]] = field(default_factory=list)
    transport_fcis: list[bytes] = field(default_factory=list)


def read_subscriber_rtcp(compound: bytes) -> SubscriberRtcp:
    """Read a decrypted (compound) RTCP packet; ``MalformedRtcp`` if any part is unreadable.

    Reports (SR, RR, SDES, BYE, XR, APP) are skipped: the SFU's estimates come
    from transport-cc feedback, REMB and NACKs.
    """
    found = SubscriberRtcp()
    pos = 0
    size = len(compound)
    if size == 0:
        raise MalformedRtcp("empty RTCP packet")
    while pos < size:
        if pos + 4 > size:
            raise MalformedRtcp("RTCP header is truncated")
        first, packet_type, length_words = _RTCP_HEADER.unpack_from(compound, pos)
        end = pos + 4 * (length_words + 1)
        if first >> 6 != RTCP_VERSION or end > size:
            raise MalformedRtcp("RTCP packet framing is invalid")
        if packet_type in (RTCP_RTPFB, RTCP_PSFB):
            padding = compound[end - 1] if first & 0x20 else 0
            body_end = end - padding
            if body_end < pos + FEEDBACK_HEADER_SIZE or (first & 0x20 and padding == 0):
                raise MalformedRtcp("feedback packet is shorter than its header")
            _read_feedback(compound, pos, body_end, packet_type, first & 0x1F, found)
        pos = end
    return found


def _read_feedback(compound: bytes, pos: int, end: int, packet_type: int, fmt: int,
                   found: SubscriberRtcp) -> None:
    media_ssrc = _SSRC.unpack_from(compound, pos + 8)[0]
    fci = pos + FEEDBACK_HEADER_SIZE
    if packet_type == RTCP_RTPFB:
        if fmt == TRANSPORT_CC_FMT:
            found.transport_fcis.append(compound[fci:end])
        elif fmt == RTPFB_NACK:
            lost = _nacked(compound, fci, end)
            found.feedback.append((media_ssrc, SubscriberFeedback(lost=lost)))
    elif fmt == PSFB_PLI:
        found.feedback.append((media_ssrc, SubscriberFeedback(keyframe=True)))
    elif fmt == PSFB_FIR:
        # RFC 5104 §4.3.1.2: the media source field is unused; each entry names its SSRC.
        if (end - fci) % FIR_ENTRY_SIZE:
            raise MalformedRtcp("FIR entries are truncated")
        for entry in range(fci, end, FIR_ENTRY_SIZE):
            found.feedback.append((_SSRC.unpack_from(compound, entry)[0],
                                   SubscriberFeedback(keyframe=True)))
    elif fmt == PSFB_AFB and compound[fci:fci + 4] == REMB_IDENTIFIER:
        bitrate, ssrcs = _remb(compound, fci, end)
        estimate = SubscriberFeedback(estimated_bitrate=bitrate)
        found.feedback.extend((ssrc, estimate) for ssrc in ssrcs)


def _nacked(compound: bytes, start: int, end: int) -> tuple[int, ...]:
    """RFC 4585 §6.2.1: each entry is a lost packet ID and a bitmask of the 16 after it."""
    if (end - start) % NACK_ENTRY_SIZE or end == start:
        raise MalformedRtcp("NACK entries are truncated or missing")
    lost: list[int] = []
    for entry in range(start, end, NACK_ENTRY_SIZE):
        packet_id, bitmask = _NACK_ENTRY.unpack_from(compound, entry)
        lost.append(packet_id)
        bit = 0
        while bitmask:
            if bitmask & 1:
                lost.append((packet_id + bit + 1) & 0xFFFF)
            bitmask >>= 1
            bit += 1
    return tuple(lost)


def _remb(compound: bytes, start: int, end: int) -> tuple[int, list[int]]:
    """The REMB's bitrate (6-bit exponent, 18-bit mantissa) and the SSRCs it applies to."""
    if end - start < 8:
        raise MalformedRtcp("REMB is shorter than its header")
    count = compound[start + 4]
    exponent = compound[start + 5] >> 2
    mantissa = (compound[start + 5] & 0x03) << 16 | compound[start + 6] << 8 | compound[start + 7]
    if end - start < 8 + 4 * count:
        raise MalformedRtcp(f"REMB names {count} SSRCs and carries fewer")
    ssrcs = [_SSRC.unpack_from(compound, start + 8 + 4 * i)[0] for i in range(count)]
    return mantissa << exponent, ssrcs
