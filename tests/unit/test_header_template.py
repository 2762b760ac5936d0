"""The per-consumer header layout: what a subscriber's RTP parser reads back from it."""

from __future__ import annotations

from sfu.header_template import FIXED_HEADER, TRANSPORT_CC_VALUE, layout_header
from sfu.rtp import parse_header


def _patched(layout_args: dict[str, object], *, level: bytes | None) -> bytes:
    layout = layout_header(**layout_args)  # type: ignore[arg-type]
    assert layout is not None
    buffer = layout.new_buffer()
    FIXED_HEADER.pack_into(buffer, 0, 0x90, 0x80 | 111, 4321, 99_000, 0xDEADBEEF)
    if layout.abs_send_time_at:
        buffer[layout.abs_send_time_at:layout.abs_send_time_at + 3] = b"\x01\x02\x03"
    if layout.audio_level_at:
        at = layout.audio_level_at
        if level is None:
            buffer[at] = buffer[at + 1] = 0
        else:
            buffer[at] = layout.audio_level_element
            buffer[at + 1] = level[0]
    if layout.transport_cc_at:
        TRANSPORT_CC_VALUE.pack_into(buffer, layout.transport_cc_at, 0xABCD)
    return bytes(buffer) + b"payload"


AUDIO = {"mid_id": 1, "mid": b"3", "abs_send_time_id": 2, "audio_level_id": 4,
         "transport_cc_id": 5}


def test_every_patched_value_reads_back_where_a_receiver_looks() -> None:
    header = parse_header(_patched(AUDIO, level=b"\x85"))
    assert (header.marker, header.payload_type) == (True, 111)
    assert (header.sequence_number, header.timestamp, header.ssrc) == (4321, 99_000, 0xDEADBEEF)
    assert header.extensions == {1: b"3", 2: b"\x01\x02\x03", 4: b"\x85", 5: b"\xab\xcd"}
    assert header.payload_size == len(b"payload")


def test_a_packet_without_audio_level_leaves_padding_not_a_stale_level() -> None:
    header = parse_header(_patched(AUDIO, level=None))
    assert 4 not in header.extensions
    assert header.extensions[5] == b"\xab\xcd"  # elements after the padding still parse


def test_only_negotiated_extensions_are_laid_out() -> None:
    layout = layout_header(mid_id=1, mid=b"0", abs_send_time_id=0, audio_level_id=0,
                           transport_cc_id=0)
    assert layout is not None
    assert (layout.abs_send_time_at, layout.audio_level_at, layout.transport_cc_at) == (0, 0, 0)
    assert len(layout.template) % 4 == 0


def test_layouts_the_one_byte_form_cannot_hold_fall_back_to_the_general_path() -> None:
    assert layout_header(mid_id=15, mid=b"0", abs_send_time_id=0, audio_level_id=0,
                         transport_cc_id=0) is None
    assert layout_header(mid_id=1, mid=b"x" * 17, abs_send_time_id=0, audio_level_id=0,
                         transport_cc_id=0) is None
    assert layout_header(mid_id=0, mid=b"", abs_send_time_id=0, audio_level_id=0,
                         transport_cc_id=0) is None
