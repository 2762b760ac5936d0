"""A consumer's outgoing RTP header, laid out once and patched per packet.

Everything in the header extension block of a forwarded packet is either
fixed for the consumer's m-line (the ids, the MID value) or a few bytes that
change per packet at known offsets (abs-send-time, the audio level, the
transport-wide sequence number). Laying the block out once when the
subscriber's answer is accepted turns the per-packet work into one
``pack_into`` of the fixed header and two or three small slice writes,
instead of building and joining an extension list for every copy.

An element that a packet does not carry (an audio packet without a level)
is written as zero bytes, which RFC 8285 §4.2 defines as padding between
elements, so the layout never changes from one packet to the next.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ONE_BYTE_PROFILE = 0xBEDE
FIXED_HEADER = struct.Struct("!BBHII")
TRANSPORT_CC_VALUE = struct.Struct("!H")
FIRST_BYTE_WITH_EXTENSION = 0x90  # version 2, extension bit
PADDING_BIT = 0x20


@dataclass(frozen=True, slots=True)
class HeaderLayout:
    """Where each per-packet value goes in a consumer's header (0: not present)."""

    template: bytes
    abs_send_time_at: int  # offset of the 3-byte value
    audio_level_at: int  # offset of the element's id/length byte (value follows)
    audio_level_element: int  # the id/length byte to write when the packet has a level
    transport_cc_at: int  # offset of the 2-byte value

    def new_buffer(self) -> bytearray:
        """A private copy the consumer patches in place for each packet it sends."""
        return bytearray(self.template)


def layout_header(*, mid_id: int, mid: bytes, abs_send_time_id: int, audio_level_id: int,
                  transport_cc_id: int) -> HeaderLayout | None:
    """The layout for these negotiated extension ids; None when the one-byte form cannot
    carry them (an id above 14 or a MID longer than 16 bytes: the caller then builds each
    header the general way)."""
    ids = [i for i in (mid_id, abs_send_time_id, audio_level_id, transport_cc_id) if i]
    if any(not 0 < i < 15 for i in ids) or (mid_id and not 0 < len(mid) <= 16):
        return None
    body = bytearray()
    offsets = {"abs": 0, "level": 0, "twcc": 0}
    start = FIXED_HEADER.size + 4  # the fixed header, then the 0xBEDE profile and length

    def element(ext_id: int, value: bytes, name: str | None = None) -> None:
        if name is not None:
            offsets[name] = start + len(body) + (0 if name == "level" else 1)
        body.append((ext_id << 4) | (len(value) - 1))
        body.extend(value)

    if mid_id:
        element(mid_id, mid)
    if abs_send_time_id:
        element(abs_send_time_id, bytes(3), "abs")
    if audio_level_id:
        element(audio_level_id, bytes(1), "level")
    if transport_cc_id:
        element(transport_cc_id, bytes(2), "twcc")
    if not body:
        return None
    body.extend(bytes(-len(body) % 4))
    template = (bytes(FIXED_HEADER.size)
                + struct.pack("!HH", ONE_BYTE_PROFILE, len(body) // 4) + bytes(body))
    return HeaderLayout(template=template, abs_send_time_at=offsets["abs"],
                        audio_level_at=offsets["level"],
                        audio_level_element=(audio_level_id << 4) if audio_level_id else 0,
                        transport_cc_at=offsets["twcc"])
