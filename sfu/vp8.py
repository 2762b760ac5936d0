"""The VP8 RTP payload descriptor (RFC 7741 §4.2): read it, and rewrite its counters.

When a consumer switches simulcast layers, the subscriber's decoder must see
one continuous stream: its picture ids and TL0PICIDX keep counting across the
switch. Only the descriptor's bytes are touched, never the VP8 bitstream,
except for the keyframe header that tells a layer's resolution (RFC 6386 §9.1).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Vp8Descriptor:
    """Where the descriptor's fields are, as offsets into the packet."""

    start_of_partition: bool
    partition_index: int
    picture_id: int | None
    picture_id_offset: int  # offset of the picture id's first byte, or -1
    picture_id_bits: int  # 7 or 15
    tl0picidx: int | None
    tl0picidx_offset: int
    temporal_id: int | None
    payload_offset: int  # first byte of the VP8 bitstream

    @property
    def frame_start(self) -> bool:
        return self.start_of_partition and self.partition_index == 0


def parse_descriptor(data: bytes, start: int, end: int) -> Vp8Descriptor | None:
    """The descriptor at ``data[start:end]``, or None when it is truncated."""
    if end - start < 1:
        return None
    first = data[start]
    pos = start + 1
    picture_id = tl0picidx = temporal_id = None
    picture_id_offset = tl0_offset = -1
    picture_id_bits = 0
    if first & 0x80:
        if pos >= end:
            return None
        ext = data[pos]
        pos += 1
        if ext & 0x80:
            if pos >= end:
                return None
            picture_id_offset = pos
            if data[pos] & 0x80:
                if pos + 1 >= end:
                    return None
                picture_id = ((data[pos] & 0x7F) << 8) | data[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = data[pos]
                picture_id_bits = 7
                pos += 1
        if ext & 0x40:
            if pos >= end:
                return None
            tl0_offset = pos
            tl0picidx = data[pos]
            pos += 1
        if ext & 0x30:
            if pos >= end:
                return None
            if ext & 0x20:
                temporal_id = data[pos] >> 6
            pos += 1
    if pos > end:
        return None
    return Vp8Descriptor(
        start_of_partition=bool(first & 0x10),
        partition_index=first & 0x07,
        picture_id=picture_id,
        picture_id_offset=picture_id_offset,
        picture_id_bits=picture_id_bits,
        tl0picidx=tl0picidx,
        tl0picidx_offset=tl0_offset,
        temporal_id=temporal_id,
        payload_offset=pos,
    )


def is_keyframe_start(data: bytes, descriptor: Vp8Descriptor, end: int) -> bool:
    """First packet of a key frame: partition 0 starts here and the P bit is 0."""
    pos = descriptor.payload_offset
    return descriptor.frame_start and pos < end and not data[pos] & 0x01


def keyframe_size(data: bytes, descriptor: Vp8Descriptor, end: int) -> tuple[int, int] | None:
    """(width, height) from a key frame's header: 3-byte tag, start code 9d 01 2a, sizes."""
    pos = descriptor.payload_offset
    if not is_keyframe_start(data, descriptor, end) or pos + 10 > end:
        return None
    if data[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[pos + 6 : pos + 8], "little") & 0x3FFF
    height = int.from_bytes(data[pos + 8 : pos + 10], "little") & 0x3FFF
    return width, height


def rewrite_counters(payload: bytearray, base: int, descriptor: Vp8Descriptor,
                     picture_id: int | None, tl0picidx: int | None) -> None:
    """Write new picture id / TL0PICIDX into ``payload`` (a copy that starts at ``base``)."""
    if picture_id is not None and descriptor.picture_id_offset >= 0:
        pos = descriptor.picture_id_offset - base
        if descriptor.picture_id_bits == 15:
            payload[pos] = 0x80 | ((picture_id >> 8) & 0x7F)
            payload[pos + 1] = picture_id & 0xFF
        else:
            payload[pos] = picture_id & 0x7F
    if tl0picidx is not None and descriptor.tl0picidx_offset >= 0:
        payload[descriptor.tl0picidx_offset - base] = tl0picidx & 0xFF
