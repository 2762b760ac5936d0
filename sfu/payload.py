"""Codec payload inspection without decoding: is this packet the start of a keyframe?

A subscriber can only start (or resume) decoding on a keyframe, so a new
consumer drops video until one arrives. Only the first bytes of the payload
are read. VP8: RFC 7741 §4.2-4.3; H.264: RFC 6184 §5.
"""

from __future__ import annotations

from collections.abc import Callable

from sfu.vp8 import is_keyframe_start, parse_descriptor

KeyframeTest = Callable[[bytes, int, int], bool]

H264_NAL_IDR = 5
H264_NAL_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def vp8_keyframe_start(data: bytes, start: int, end: int) -> bool:
    """True when the payload ``data[start:end]`` begins partition 0 of a VP8 key frame."""
    descriptor = parse_descriptor(data, start, end)
    return descriptor is not None and is_keyframe_start(data, descriptor, end)


def h264_keyframe_start(data: bytes, start: int, end: int) -> bool:
    """True when the payload carries an SPS or the first fragment of an IDR slice."""
    if end - start < 1:
        return False
    nal_type = data[start] & 0x1F
    if nal_type in (H264_NAL_IDR, H264_NAL_SPS):
        return True
    if nal_type == H264_STAP_A:
        pos = start + 1
        while pos + 2 < end:
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > end:
                return False
            if data[pos] & 0x1F in (H264_NAL_IDR, H264_NAL_SPS):
                return True
            pos += size
        return False
    if nal_type == H264_FU_A and end - start >= 2:
        fu_header = data[start + 1]
        return bool(fu_header & 0x80) and fu_header & 0x1F in (H264_NAL_IDR, H264_NAL_SPS)
    return False


def never_keyframe(data: bytes, start: int, end: int) -> bool:
    """Audio has no keyframes: every packet can be forwarded as it comes."""
    return False


KEYFRAME_TESTS: dict[str, KeyframeTest] = {
    "video/vp8": vp8_keyframe_start,
    "video/h264": h264_keyframe_start,
}


def keyframe_test_for(mime_type: str) -> KeyframeTest | None:
    """The keyframe test for a video codec, or None for codecs the SFU cannot forward."""
    return KEYFRAME_TESTS.get(mime_type.lower())
