"""sfu.payload: keyframe-start detection for VP8 (RFC 7741) and H.264 (RFC 6184)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.payload import (
    h264_keyframe_start,
    keyframe_test_for,
    never_keyframe,
    vp8_keyframe_start,
)

# VP8 payload header, first byte: |Size0|H|VER|P|; P=0 on a key frame.
VP8_KEY = b"\x10\x02\x00\x9d\x01\x2a"
VP8_INTER = b"\x11\x02\x00"


def vp8_descriptor(
    *,
    start: bool = True,
    pid: int = 0,
    non_reference: bool = False,
    picture_id: int | None = None,
    long_picture_id: bool = False,
    tl0picidx: int | None = None,
    tid: int | None = None,
    keyidx: int | None = None,
    filler: int = 0,
) -> bytes:
    """An RFC 7741 §4.2 payload descriptor.

    The low bit of every byte after the first is forced to ``filler``, so that a parser that
    reads a descriptor byte as the VP8 payload header sees the opposite P bit.
    """
    first = (0x10 if start else 0) | (0x20 if non_reference else 0) | pid
    ext = 0
    optional: list[int] = []
    if picture_id is not None:
        ext |= 0x80
        if long_picture_id:
            optional += [0x80 | (picture_id >> 8), picture_id & 0xFF]
        else:
            optional.append(picture_id & 0x7F)
    if tl0picidx is not None:
        ext |= 0x40
        optional.append(tl0picidx)
    if tid is not None or keyidx is not None:
        if tid is not None:
            ext |= 0x20
        if keyidx is not None:
            ext |= 0x10
        optional.append(((tid or 0) << 6) | (keyidx or 0))
    if not ext:
        return bytes([first])
    return bytes([first | 0x80] + [(b & 0xFE) | filler for b in [ext, *optional]])


def vp8(descriptor: bytes, payload: bytes) -> bool:
    data = descriptor + payload
    return vp8_keyframe_start(data, 0, len(data))


# ----------------------------------------------------------------- VP8


def test_vp8_minimal_descriptor_key_frame() -> None:
    assert vp8(b"\x10", VP8_KEY) is True


def test_vp8_minimal_descriptor_inter_frame() -> None:
    assert vp8(b"\x10", VP8_INTER) is False


def test_vp8_not_start_of_partition() -> None:
    assert vp8(vp8_descriptor(start=False), VP8_KEY) is False


@pytest.mark.parametrize("pid", range(1, 8))
def test_vp8_start_of_later_partition(pid: int) -> None:
    assert vp8(vp8_descriptor(pid=pid), VP8_KEY) is False


def test_vp8_n_bit_does_not_matter() -> None:
    assert vp8(vp8_descriptor(non_reference=True), VP8_KEY) is True


def test_vp8_x_without_optional_fields() -> None:
    assert vp8(b"\x90\x00", VP8_KEY) is True
    assert vp8(b"\x90\x00", VP8_INTER) is False


DESCRIPTOR_VARIANTS = {
    "7-bit picture id": {"picture_id": 0x55},
    "15-bit picture id": {"picture_id": 0x1234, "long_picture_id": True},
    "tl0picidx": {"tl0picidx": 3},
    "tid": {"tid": 2},
    "keyidx": {"keyidx": 5},
    "tid and keyidx": {"tid": 1, "keyidx": 9},
    "I and L": {"picture_id": 0x21, "tl0picidx": 8},
    "15-bit I, L, T, K": {"picture_id": 0x7FFF, "long_picture_id": True, "tl0picidx": 255,
                          "tid": 3, "keyidx": 31},
}


@pytest.mark.parametrize("fields", DESCRIPTOR_VARIANTS.values(), ids=DESCRIPTOR_VARIANTS.keys())
def test_vp8_extended_descriptor_key_frame(fields: dict[str, int]) -> None:
    # Every descriptor byte has its low bit set: reading one as the payload header says "inter".
    descriptor = vp8_descriptor(filler=1, **fields)
    assert vp8(descriptor, VP8_KEY) is True


@pytest.mark.parametrize("fields", DESCRIPTOR_VARIANTS.values(), ids=DESCRIPTOR_VARIANTS.keys())
def test_vp8_extended_descriptor_inter_frame(fields: dict[str, int]) -> None:
    # Every descriptor byte has its low bit clear: reading one as the payload header says "key".
    descriptor = vp8_descriptor(filler=0, **fields)
    assert all(b & 1 == 0 for b in descriptor[1:])
    assert vp8(descriptor, VP8_INTER) is False


@pytest.mark.parametrize("fields", DESCRIPTOR_VARIANTS.values(), ids=DESCRIPTOR_VARIANTS.keys())
def test_vp8_truncated_after_descriptor_is_not_a_key_frame(fields: dict[str, int]) -> None:
    descriptor = vp8_descriptor(**fields)
    for cut in range(len(descriptor) + 1):
        assert vp8(descriptor[:cut], b"") is False


def test_vp8_empty_payload() -> None:
    assert vp8_keyframe_start(b"", 0, 0) is False
    assert vp8_keyframe_start(b"\x10\x10", 1, 1) is False


def test_vp8_respects_start_and_end() -> None:
    data = b"\xff\xff" + b"\x10" + VP8_KEY + b"\xff"
    assert vp8_keyframe_start(data, 2, len(data)) is True
    assert vp8_keyframe_start(data, 2, 3) is False  # descriptor only
    assert vp8_keyframe_start(data, 0, len(data)) is False  # 0xff: S bit but PID 7
    inter = b"\x01" + b"\x10" + VP8_INTER
    assert vp8_keyframe_start(inter, 1, len(inter)) is False


@st.composite
def vp8_packets(draw: st.DrawFn) -> tuple[bytes, bool]:
    start = draw(st.booleans())
    pid = draw(st.integers(0, 7))
    picture = draw(st.none() | st.integers(0, 0x7FFF))
    long_id = picture is not None and (picture > 0x7F or draw(st.booleans()))
    tl0 = draw(st.none() | st.integers(0, 255))
    tid = draw(st.none() | st.integers(0, 3))
    keyidx = draw(st.none() | st.integers(0, 31))
    filler = draw(st.integers(0, 1))
    descriptor = vp8_descriptor(start=start, pid=pid, non_reference=draw(st.booleans()),
                                picture_id=picture, long_picture_id=long_id, tl0picidx=tl0,
                                tid=tid, keyidx=keyidx, filler=filler)
    key = draw(st.booleans())
    payload = (VP8_KEY if key else VP8_INTER)[: draw(st.integers(0, 3))]
    expected = start and pid == 0 and key and len(payload) > 0
    return descriptor + payload, expected


@given(vp8_packets())
def test_vp8_descriptor_property(case: tuple[bytes, bool]) -> None:
    data, expected = case
    assert vp8_keyframe_start(data, 0, len(data)) is expected


@given(st.binary(max_size=24), st.data())
def test_vp8_never_raises(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert vp8_keyframe_start(data, start, end) in (True, False)


# ----------------------------------------------------------------- H.264


def h264(data: bytes) -> bool:
    return h264_keyframe_start(data, 0, len(data))


def stap_a(*nals: bytes) -> bytes:
    return b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in nals)


IDR = b"\x65\x88\x84\x00"
SPS = b"\x67\x42\xc0\x1f"
PPS = b"\x68\xce\x3c\x80"
SLICE = b"\x41\x9a\x02\x03"
SEI = b"\x06\x05\x01"


@pytest.mark.parametrize("nal", [IDR, SPS, b"\x25", b"\x07"],
                         ids=["idr", "sps", "idr-nri1", "sps-nri0"])
def test_h264_single_nal_keyframe(nal: bytes) -> None:
    assert h264(nal) is True


@pytest.mark.parametrize("nal", [PPS, SLICE, SEI, b"\x09\x10", b"\x01"],
                         ids=["pps", "slice", "sei", "aud", "slice-short"])
def test_h264_single_nal_not_keyframe(nal: bytes) -> None:
    assert h264(nal) is False


def test_h264_stap_a_with_sps_pps_idr() -> None:
    assert h264(stap_a(SPS, PPS, IDR)) is True


def test_h264_stap_a_keyframe_nal_not_first() -> None:
    assert h264(stap_a(SEI, PPS, IDR)) is True


def test_h264_stap_a_without_keyframe_nal() -> None:
    assert h264(stap_a(SEI, PPS, SLICE)) is False


def test_h264_stap_a_one_byte_nal_at_the_end() -> None:
    assert h264(stap_a(PPS, b"\x65")) is True


def test_h264_stap_a_zero_size_stops() -> None:
    assert h264(b"\x78" + b"\x00\x00" + len(IDR).to_bytes(2, "big") + IDR) is False


def test_h264_stap_a_size_overruns_packet() -> None:
    data = b"\x78" + (len(IDR) + 1).to_bytes(2, "big") + IDR
    assert h264(data) is False


def test_h264_stap_a_truncated_every_way() -> None:
    full = stap_a(PPS, IDR)
    for cut in range(len(full)):
        assert h264(full[:cut]) is False, cut


@pytest.mark.parametrize(
    ("fu_header", "expected"),
    [
        (0x85, True),  # S, IDR
        (0x87, True),  # S, SPS
        (0x05, False),  # middle fragment of an IDR
        (0x45, False),  # end fragment of an IDR
        (0x81, False),  # start of a non-IDR slice
        (0xC5, True),  # S and E together (single fragment) of an IDR
    ],
)
def test_h264_fu_a(fu_header: int, expected: bool) -> None:
    assert h264(bytes([0x7C, fu_header, 0x88, 0x84])) is expected
    assert h264(bytes([0x5C, fu_header])) is expected  # other NRI, no body


def test_h264_fu_a_without_fu_header() -> None:
    assert h264(b"\x7c") is False


def test_h264_empty() -> None:
    assert h264_keyframe_start(b"", 0, 0) is False
    assert h264_keyframe_start(IDR, 2, 2) is False


def test_h264_respects_start_and_end() -> None:
    data = SLICE + IDR
    assert h264_keyframe_start(data, len(SLICE), len(data)) is True
    assert h264_keyframe_start(data, 0, len(SLICE)) is False
    stap = b"\x00" + stap_a(PPS, IDR)
    # The IDR size field fits before ``end`` but its NAL does not.
    assert h264_keyframe_start(stap, 1, len(stap) - len(IDR)) is False
    assert h264_keyframe_start(stap, 1, len(stap)) is True


def test_h264_fu_a_header_beyond_end_is_not_read() -> None:
    data = b"\x7c\x85\x88"
    assert h264_keyframe_start(data, 0, 1) is False
    assert h264_keyframe_start(data, 0, 2) is True


@given(st.binary(max_size=24), st.data())
def test_h264_never_raises(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert h264_keyframe_start(data, start, end) in (True, False)


@given(st.lists(st.binary(min_size=1, max_size=8), max_size=5))
def test_h264_stap_a_property(nals: list[bytes]) -> None:
    expected = any(n[0] & 0x1F in (5, 7) for n in nals)
    assert h264(stap_a(*nals)) is expected


# ----------------------------------------------------------------- registry


def test_keyframe_test_for() -> None:
    assert keyframe_test_for("video/VP8") is vp8_keyframe_start
    assert keyframe_test_for("video/vp8") is vp8_keyframe_start
    assert keyframe_test_for("video/H264") is h264_keyframe_start
    assert keyframe_test_for("video/VP9") is None
    assert keyframe_test_for("audio/opus") is None


def test_never_keyframe() -> None:
    assert never_keyframe(b"\x10" + VP8_KEY, 0, 7) is False
    assert never_keyframe(IDR, 0, len(IDR)) is False
