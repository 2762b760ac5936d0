"""sfu.rtp: raw RTP header parsing/writing (RFC 3550 §5.1, RFC 8285)."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket, pack_header_extensions
from hypothesis import assume, example, given
from hypothesis import strategies as st

from sfu.rtp import (
    MalformedPacket,
    RtpHeader,
    abs_send_time_now,
    abs_send_time_value,
    is_rtcp_packet,
    pack_extensions,
    pack_header,
    parse_header,
    seq_newer,
)


def raw_packet(
    *,
    payload: bytes = b"",
    csrcs: tuple[int, ...] = (),
    ext: tuple[int, bytes] | None = None,
    padding: int = 0,
    marker: bool = False,
    payload_type: int = 96,
    seq: int = 1234,
    timestamp: int = 0xDEADBEEF,
    ssrc: int = 0x01020304,
    version: int = 2,
) -> bytes:
    """An RTP packet written by hand (independently of sfu.rtp's writer)."""
    first = (version << 6) | len(csrcs)
    if ext is not None:
        first |= 0x10
    if padding:
        first |= 0x20
    second = (0x80 if marker else 0) | payload_type
    data = struct.pack("!BBHII", first, second, seq, timestamp, ssrc)
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        profile, body = ext
        assert len(body) % 4 == 0
        data += struct.pack("!HH", profile, len(body) // 4) + body
    data += payload
    if padding:
        data += b"\x00" * (padding - 1) + bytes([padding])
    return data


def payload_of(data: bytes, header: RtpHeader) -> bytes:
    return data[header.payload_start : header.payload_end]


# ----------------------------------------------------------------- fixed header


def test_fixed_header_fields() -> None:
    data = raw_packet(payload=b"hello", marker=True, payload_type=111, seq=65535,
                      timestamp=0xFFFFFFFF, ssrc=0xCAFEBABE)
    header = parse_header(data)
    assert header.marker is True
    assert header.payload_type == 111
    assert header.sequence_number == 65535
    assert header.timestamp == 0xFFFFFFFF
    assert header.ssrc == 0xCAFEBABE
    assert header.extensions == {}
    assert header.payload_start == 12
    assert header.payload_end == 17
    assert header.payload_size == 5
    assert payload_of(data, header) == b"hello"


def test_marker_clear_and_payload_type_zero() -> None:
    header = parse_header(raw_packet(payload=b"x", marker=False, payload_type=0))
    assert header.marker is False
    assert header.payload_type == 0


def test_header_only_packet_has_empty_payload() -> None:
    header = parse_header(raw_packet())
    assert header.payload_start == header.payload_end == 12
    assert header.payload_size == 0


def test_csrcs_are_skipped() -> None:
    data = raw_packet(payload=b"abc", csrcs=(1, 2, 3))
    header = parse_header(data)
    assert header.payload_start == 12 + 12
    assert payload_of(data, header) == b"abc"


def test_fifteen_csrcs() -> None:
    data = raw_packet(payload=b"p", csrcs=tuple(range(15)))
    header = parse_header(data)
    assert header.payload_start == 12 + 60
    assert payload_of(data, header) == b"p"


# ----------------------------------------------------------------- extensions


def test_one_byte_extensions() -> None:
    # id 1 len 1 "\x07", id 3 len 3 "abc" -> 2 + 4 = 6 bytes, 2 padding
    body = bytes([0x10, 0x07, 0x32]) + b"abc" + b"\x00\x00"
    data = raw_packet(payload=b"PAY", ext=(0xBEDE, body))
    header = parse_header(data)
    assert header.extensions == {1: b"\x07", 3: b"abc"}
    assert header.payload_start == 12 + 4 + 8
    assert payload_of(data, header) == b"PAY"


def test_one_byte_extension_padding_between_elements() -> None:
    body = b"\x00\x00" + bytes([0x20]) + b"Z" + b"\x00" + bytes([0x41]) + b"qr" + b"\x00" * 4
    assert len(body) == 12
    header = parse_header(raw_packet(payload=b"x", ext=(0xBEDE, body)))
    assert header.extensions == {2: b"Z", 4: b"qr"}


def test_one_byte_extension_sixteen_byte_value() -> None:
    value = bytes(range(16))
    body = bytes([0xEF]) + value + b"\x00\x00\x00"
    header = parse_header(raw_packet(payload=b"x", ext=(0xBEDE, body)))
    assert header.extensions == {14: value}


def test_one_byte_extension_id_15_stops_parsing() -> None:
    # id 15 claims 16 bytes but its length must be ignored: parsing just stops there.
    body = bytes([0x10, 0xAA, 0xFF, 0x20]) + b"\x00" * 4
    data = raw_packet(payload=b"PAY", ext=(0xBEDE, body))
    header = parse_header(data)
    assert header.extensions == {1: b"\xaa"}
    assert header.payload_start == 12 + 4 + 8
    assert payload_of(data, header) == b"PAY"


def test_one_byte_extension_truncated_value_raises() -> None:
    body = bytes([0x13, 0x01, 0x02, 0x03])  # id 1 says 4 bytes, 3 present in the block
    with pytest.raises(MalformedPacket):
        parse_header(raw_packet(payload=b"PAYLOAD", ext=(0xBEDE, body)))


def test_two_byte_extensions() -> None:
    # id 200 len 0, id 3 len 20, padding
    value = bytes(range(20))
    body = bytes([200, 0, 3, 20]) + value
    body += b"\x00" * (-len(body) % 4)
    data = raw_packet(payload=b"PAY", ext=(0x1000, body))
    header = parse_header(data)
    assert header.extensions == {200: b"", 3: value}
    assert payload_of(data, header) == b"PAY"


def test_two_byte_extension_appbits_profile_accepted() -> None:
    body = bytes([5, 2]) + b"hi"
    header = parse_header(raw_packet(payload=b"x", ext=(0x100F, body)))
    assert header.extensions == {5: b"hi"}


def test_two_byte_extension_padding_bytes_skipped() -> None:
    body = b"\x00\x00" + bytes([7, 1]) + b"A" + b"\x00\x00\x00"
    header = parse_header(raw_packet(payload=b"x", ext=(0x1000, body)))
    assert header.extensions == {7: b"A"}


def test_two_byte_extension_truncated_value_raises() -> None:
    body = bytes([9, 5]) + b"ab"  # says 5, 2 in the block
    with pytest.raises(MalformedPacket):
        parse_header(raw_packet(payload=b"PAYLOADPAYLOAD", ext=(0x1000, body)))


def test_two_byte_extension_header_cut_at_block_end_raises() -> None:
    body = b"\x00\x00\x00" + bytes([9])  # id at the very last byte, no length byte
    with pytest.raises(MalformedPacket):
        parse_header(raw_packet(payload=b"PAYLOAD", ext=(0x1000, body)))


def test_unknown_extension_profile_is_skipped_not_rejected() -> None:
    data = raw_packet(payload=b"PAY", ext=(0x1234, b"\x11\x22\x33\x44"))
    header = parse_header(data)
    assert header.extensions == {}
    assert header.payload_start == 20
    assert payload_of(data, header) == b"PAY"


def test_empty_extension_block() -> None:
    data = raw_packet(payload=b"PAY", ext=(0xBEDE, b""))
    header = parse_header(data)
    assert header.extensions == {}
    assert header.payload_start == 16


def test_csrcs_then_extension() -> None:
    data = raw_packet(payload=b"PAY", csrcs=(7, 8), ext=(0xBEDE, bytes([0x50, 0x42, 0, 0])))
    header = parse_header(data)
    assert header.extensions == {5: b"\x42"}
    assert header.payload_start == 12 + 8 + 8
    assert payload_of(data, header) == b"PAY"


# ----------------------------------------------------------------- padding


def test_padding_is_excluded_from_payload() -> None:
    data = raw_packet(payload=b"media", padding=7)
    header = parse_header(data)
    assert header.payload_end == len(data) - 7
    assert payload_of(data, header) == b"media"


def test_padding_only_packet() -> None:
    data = raw_packet(payload=b"", padding=20)
    header = parse_header(data)
    assert header.payload_size == 0
    assert header.payload_start == header.payload_end == 12


def test_padding_with_extension() -> None:
    data = raw_packet(payload=b"media", ext=(0xBEDE, bytes([0x10, 1, 0, 0])), padding=3)
    header = parse_header(data)
    assert header.extensions == {1: b"\x01"}
    assert payload_of(data, header) == b"media"


def test_padding_length_zero_raises() -> None:
    data = bytearray(raw_packet(payload=b"media", padding=4))
    data[-1] = 0
    with pytest.raises(MalformedPacket):
        parse_header(bytes(data))


def test_padding_longer_than_payload_raises() -> None:
    data = bytearray(raw_packet(payload=b"media", padding=4))
    data[-1] = 10  # 5 payload + 4 padding = 9 bytes after the header
    with pytest.raises(MalformedPacket):
        parse_header(bytes(data))


def test_padding_eating_exactly_the_body_is_fine() -> None:
    data = bytearray(raw_packet(payload=b"media", padding=4))
    data[-1] = 9
    header = parse_header(bytes(data))
    assert header.payload_size == 0


def test_padding_may_not_reach_into_extension() -> None:
    data = bytearray(raw_packet(payload=b"", ext=(0xBEDE, bytes([0x10, 1, 0, 0])), padding=2))
    data[-1] = 3
    with pytest.raises(MalformedPacket):
        parse_header(bytes(data))


# ----------------------------------------------------------------- malformed


@pytest.mark.parametrize("size", [0, 1, 11])
def test_shorter_than_fixed_header_raises(size: int) -> None:
    with pytest.raises(MalformedPacket):
        parse_header(raw_packet(payload=b"xyz")[:size])


@pytest.mark.parametrize("version", [0, 1, 3])
def test_wrong_version_raises(version: int) -> None:
    with pytest.raises(MalformedPacket, match="version"):
        parse_header(raw_packet(payload=b"xyz", version=version))


def test_truncated_csrc_list_raises() -> None:
    data = raw_packet(payload=b"", csrcs=(1, 2, 3))[:-1]
    with pytest.raises(MalformedPacket):
        parse_header(data)


def test_extension_header_truncated_raises() -> None:
    data = raw_packet(ext=(0xBEDE, b""))[:-1]  # 3 of the 4 profile/length bytes
    with pytest.raises(MalformedPacket):
        parse_header(data)


def test_extension_block_longer_than_packet_raises() -> None:
    data = raw_packet(ext=(0xBEDE, bytes([0x10, 1, 0, 0]) * 2))[:-1]
    with pytest.raises(MalformedPacket):
        parse_header(data)


def test_malformed_packet_is_a_value_error() -> None:
    assert issubclass(MalformedPacket, ValueError)


@given(st.binary(max_size=120))
@example(b"\x90" + b"\x00" * 11)
@example(b"\xbf" + b"\x00" * 11 + b"\x01")
@example(b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x01\x1f\x00\x00\x00")
@example(b"\x90" + b"\x00" * 11 + b"\x10\x00\x00\x01\x00\x00\x00\x05")
def test_arbitrary_bytes_only_raise_malformed_packet(data: bytes) -> None:
    try:
        header = parse_header(data)
    except MalformedPacket:
        return
    assert 12 <= header.payload_start <= header.payload_end <= len(data)
    assert 0 <= header.payload_type <= 127


@st.composite
def rtp_like(draw: st.DrawFn) -> bytes:
    """Bytes that get past the version check, with a plausible extension block."""
    first = 0x80 | draw(st.integers(0, 0x3F))
    rest = draw(st.binary(min_size=11, max_size=11))
    csrcs = draw(st.binary(max_size=4 * (first & 0x0F) + 4))
    profile = draw(st.sampled_from([b"\xbe\xde", b"\x10\x00", b"\x10\x07", b"\x12\x34"]))
    length = draw(st.integers(0, 6)).to_bytes(2, "big")
    tail = draw(st.binary(max_size=40))
    return bytes([first]) + rest + csrcs + profile + length + tail


@given(rtp_like())
def test_rtp_like_bytes_only_raise_malformed_packet(data: bytes) -> None:
    try:
        header = parse_header(data)
    except MalformedPacket:
        return
    assert 12 <= header.payload_start <= header.payload_end <= len(data)


@given(st.binary(max_size=100))
@example(b"\xa0" + b"\x00" * 11 + b"\x01")
def test_agrees_with_aiortc_parser(data: bytes) -> None:
    """Wherever aiortc reads a packet, parse_header reads the same fields and payload."""
    try:
        reference = RtpPacket.parse(data)
    except ValueError:
        reference = None
    try:
        header = parse_header(data)
    except MalformedPacket:
        assert reference is None
        return
    if reference is None:
        return  # parse_header is more lenient only after an id-15 one-byte element
    assert header.marker == bool(reference.marker)
    assert header.payload_type == reference.payload_type
    assert header.sequence_number == reference.sequence_number
    assert header.timestamp == reference.timestamp
    assert header.ssrc == reference.ssrc
    assert payload_of(data, header) == reference.payload


# ----------------------------------------------------------------- writer


def test_pack_extensions_empty() -> None:
    assert pack_extensions([]) == b""


def test_pack_extensions_one_byte_layout() -> None:
    block = pack_extensions([(1, b"\x07"), (3, b"abc")])
    assert block == b"\xbe\xde\x00\x02" + bytes([0x10, 0x07, 0x32]) + b"abc\x00\x00"


def test_pack_extensions_two_byte_when_value_empty() -> None:
    block = pack_extensions([(1, b"")])
    assert block == b"\x10\x00\x00\x01" + bytes([1, 0, 0, 0])


def test_pack_extensions_two_byte_when_value_over_16() -> None:
    value = b"v" * 17
    block = pack_extensions([(2, value)])
    assert block[:2] == b"\x10\x00"
    assert block[4:6] == bytes([2, 17])
    assert len(block) == 4 + 20
    assert struct.unpack("!H", block[2:4])[0] == 5


def test_pack_extensions_two_byte_when_id_15_or_more() -> None:
    assert pack_extensions([(15, b"x")])[:2] == b"\x10\x00"
    assert pack_extensions([(1, b"x"), (200, b"y")])[:2] == b"\x10\x00"


def test_pack_extensions_block_is_word_aligned_without_extra_word() -> None:
    block = pack_extensions([(1, b"abc")])  # 4 bytes exactly: no padding
    assert block == b"\xbe\xde\x00\x01\x12abc"


def test_pack_header_layout() -> None:
    data = pack_header(marker=True, payload_type=96, sequence_number=0x1234,
                       timestamp=0x89ABCDEF, ssrc=0x11223344, extension_block=b"")
    assert data == bytes([0x80, 0xE0, 0x12, 0x34, 0x89, 0xAB, 0xCD, 0xEF,
                          0x11, 0x22, 0x33, 0x44])


def test_pack_header_sets_x_and_p_bits() -> None:
    block = pack_extensions([(1, b"a")])
    data = pack_header(marker=False, payload_type=8, sequence_number=1, timestamp=2, ssrc=3,
                       extension_block=block, padded=True)
    assert data[0] == 0x80 | 0x10 | 0x20
    assert data[1] == 8
    assert data[12:] == block


extension_id_one_byte = st.integers(1, 14)
extension_list = st.one_of(
    st.lists(st.tuples(extension_id_one_byte, st.binary(min_size=1, max_size=16)),
             max_size=6, unique_by=lambda e: e[0]),
    st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=40)),
             max_size=6, unique_by=lambda e: e[0]),
)


@given(
    extensions=extension_list,
    marker=st.booleans(),
    payload_type=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=50),
    padding=st.integers(0, 255),
)
def test_pack_then_parse_round_trip(
    extensions: list[tuple[int, bytes]], marker: bool, payload_type: int, seq: int,
    timestamp: int, ssrc: int, payload: bytes, padding: int,
) -> None:
    data = pack_header(marker=marker, payload_type=payload_type, sequence_number=seq,
                       timestamp=timestamp, ssrc=ssrc,
                       extension_block=pack_extensions(extensions), padded=padding > 0)
    data += payload
    if padding:
        data += b"\xaa" * (padding - 1) + bytes([padding])
    header = parse_header(data)
    assert header.marker == marker
    assert header.payload_type == payload_type
    assert header.sequence_number == seq
    assert header.timestamp == timestamp
    assert header.ssrc == ssrc
    assert header.extensions == dict(extensions)
    assert payload_of(data, header) == payload


@given(extension_list)
def test_pack_extensions_matches_aiortc(extensions: list[tuple[int, bytes]]) -> None:
    assume(extensions)
    profile, value = pack_header_extensions(extensions)
    assert pack_extensions(extensions) == struct.pack("!HH", profile, len(value) // 4) + value


def test_parses_a_packet_serialized_by_aiortc() -> None:
    packet = RtpPacket(payload_type=100, marker=1, sequence_number=4242,
                       timestamp=123456789, ssrc=0xAABBCCDD, payload=b"\x10\x02\x03")
    packet.csrc = [5, 6]
    packet.padding_size = 6
    data = packet.serialize()
    header = parse_header(data)
    assert (header.marker, header.payload_type, header.sequence_number, header.timestamp,
            header.ssrc) == (True, 100, 4242, 123456789, 0xAABBCCDD)
    assert header.payload_start == 20
    assert payload_of(data, header) == b"\x10\x02\x03"


def test_aiortc_parses_what_pack_header_writes() -> None:
    block = pack_extensions([(1, b"0"), (3, b"\x01\x02\x03")])
    data = pack_header(marker=True, payload_type=97, sequence_number=7, timestamp=99,
                       ssrc=1234, extension_block=block) + b"payload"
    reference = RtpPacket.parse(data)
    assert reference.marker == 1
    assert reference.payload_type == 97
    assert reference.sequence_number == 7
    assert reference.timestamp == 99
    assert reference.ssrc == 1234
    assert reference.payload == b"payload"


# ----------------------------------------------------------------- helpers


def test_abs_send_time_now_is_6_18_fixed_point() -> None:
    assert abs_send_time_now(0.0) == b"\x00\x00\x00"
    assert abs_send_time_now(1.0) == (1 << 18).to_bytes(3, "big")
    assert abs_send_time_now(0.5) == (1 << 17).to_bytes(3, "big")
    assert abs_send_time_now(63.0) == (63 << 18).to_bytes(3, "big")


def test_abs_send_time_now_wraps_every_64_seconds() -> None:
    assert abs_send_time_now(64.0) == b"\x00\x00\x00"
    assert abs_send_time_now(64.25) == abs_send_time_now(0.25)
    assert abs_send_time_now(1_700_000_000.5) == abs_send_time_now(1_700_000_000.5 % 64)


@given(st.floats(min_value=0, max_value=2e9, allow_nan=False))
def test_abs_send_time_round_trip(seconds: float) -> None:
    raw = abs_send_time_now(seconds)
    assert len(raw) == 3
    assert abs_send_time_value(raw) == int(seconds * (1 << 18)) % (1 << 24)


def test_abs_send_time_value() -> None:
    assert abs_send_time_value(b"\x01\x02\x03") == 0x010203
    assert abs_send_time_value(b"\xff\xff\xff") == 0xFFFFFF
    assert abs_send_time_value(b"") == 0
    assert abs_send_time_value(b"\x01\x02") == 0
    assert abs_send_time_value(b"\x01\x02\x03\x04") == 0


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        (1, 0, True),
        (0, 1, False),
        (5, 5, False),
        (0, 65535, True),  # wraparound
        (65535, 0, False),
        (10, 65530, True),
        (0x7FFF, 0, True),
        (0x8000, 0, False),  # exactly half way: neither is newer
        (0, 0x8000, False),
        (0x8001, 0, False),
        (0, 0x8001, True),
    ],
)
def test_seq_newer(a: int, b: int, newer: bool) -> None:
    assert seq_newer(a, b) is newer


@given(st.integers(0, 0xFFFF), st.integers(1, 0x7FFF))
def test_seq_newer_is_antisymmetric(base: int, step: int) -> None:
    later = (base + step) & 0xFFFF
    assert seq_newer(later, base)
    assert not seq_newer(base, later)


def test_is_rtcp_packet() -> None:
    assert is_rtcp_packet(bytes([0x80, 200]))  # SR
    assert is_rtcp_packet(bytes([0x81, 201, 0, 1]))  # RR
    assert is_rtcp_packet(bytes([0x80, 192]))
    assert is_rtcp_packet(bytes([0x80, 223]))
    assert not is_rtcp_packet(bytes([0x80, 191]))
    assert not is_rtcp_packet(bytes([0x80, 224]))
    assert not is_rtcp_packet(bytes([0x80, 96]))  # RTP PT 96, no marker
    assert not is_rtcp_packet(b"\x80")
    assert not is_rtcp_packet(b"")
