"""sfu.twcc: transport-wide sequence numbers and transport-cc feedback.

draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1. FCI bytes in the
first tests are written by hand from the draft's chunk layouts, not by
``build_feedback``.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.rtp import MalformedPacket
from sfu.twcc import (
    DELTA_TICK_US,
    REFERENCE_TIME_TICK_US,
    MalformedFeedback,
    PacketResult,
    TransportFeedback,
    TransportSequencer,
    build_feedback,
    build_feedback_packet,
    match_feedback,
    parse_feedback,
)


def fci(base: int, count: int, reference: int, fb_count: int, body: bytes) -> bytes:
    """FCI header written by hand: base seq, status count, 24-bit ref time, fb count."""
    return (
        struct.pack("!HH", base, count)
        + (((reference & 0xFFFFFF) << 8) | fb_count).to_bytes(4, "big")
        + body
    )


# --- parsing hand-built reports -----------------------------------------------------------


def test_run_length_chunk_of_small_deltas() -> None:
    # T=0, S=01 (small delta), run length 3; deltas 1, 2, 3 ticks of 250 µs.
    report = parse_feedback(fci(100, 3, 5, 7, b"\x20\x03" + bytes([1, 2, 3]) + b"\x00"))
    assert report.base_sequence == 100
    assert report.reference_time == 5
    assert report.feedback_count == 7
    assert report.arrivals == [250, 750, 1500]
    assert list(report.packets()) == [(100, 250), (101, 750), (102, 1500)]


def test_run_length_chunk_of_lost_packets_then_received() -> None:
    # 8191 not received (T=0, S=00, run 0x1FFF), then one small delta (S=01, run 1).
    report = parse_feedback(fci(0xFFFF, 8192, 0, 0, b"\x1f\xff\x20\x01\x04"))
    assert len(report.arrivals) == 8192
    assert report.arrivals[:8191] == [None] * 8191
    assert report.arrivals[8191] == 4 * DELTA_TICK_US
    assert list(report.packets())[1] == (0, None)  # sequence wraps after 0xFFFF


def test_one_bit_status_vector_chunk() -> None:
    # The draft's example: T=1, S=0, symbols 0 1 1 1 1 1 0 0 0 1 1 1 0 0.
    chunk = 0b1_0_01111100011100
    deltas = bytes([10, 1, 1, 1, 1, 20, 1, 1])
    report = parse_feedback(fci(10, 14, 0, 0, chunk.to_bytes(2, "big") + deltas))
    received = [i for i, a in enumerate(report.arrivals) if a is not None]
    assert received == [1, 2, 3, 4, 5, 9, 10, 11]
    assert report.arrivals[1] == 10 * 250
    assert report.arrivals[5] == 14 * 250
    assert report.arrivals[9] == 34 * 250
    assert report.arrivals[11] == 36 * 250


def test_two_bit_status_vector_chunk_with_large_deltas() -> None:
    # T=1, S=1, symbols: small, large, lost, small, lost, lost, large.
    chunk = 0b1_1_01_10_00_01_00_00_10
    deltas = bytes([4]) + struct.pack("!h", -8) + bytes([255]) + struct.pack("!h", 1000)
    report = parse_feedback(fci(500, 7, 1, 2, chunk.to_bytes(2, "big") + deltas + b"\x00"))
    assert report.arrivals == [1000, -1000, None, 62750, None, None, 312750]


def test_last_chunk_symbols_beyond_the_count_are_ignored() -> None:
    # A 1-bit vector announcing 14 packets, but the report covers 2; one delta.
    report = parse_feedback(fci(1, 2, 0, 0, (0b1_0_10111111111111).to_bytes(2, "big") + b"\x01"))
    assert report.arrivals == [250, None]


def test_reference_time_is_signed_24_bit() -> None:
    assert parse_feedback(fci(0, 1, 0xFFFFFF, 0, b"\x00\x01")).reference_time == -1
    assert parse_feedback(fci(0, 1, 0x7FFFFF, 0, b"\x00\x01")).reference_time == 0x7FFFFF
    assert parse_feedback(fci(0, 1, 0x800000, 0, b"\x00\x01")).reference_time == -0x800000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 7,
        fci(0, 0, 0, 0, b""),  # reports no packets
        fci(0, 3, 0, 0, b""),  # no chunk
        fci(0, 20, 0, 0, b"\x20\x03"),  # chunks cover 3 of 20
        fci(0, 3, 0, 0, b"\x20\x03\x01\x02"),  # 2 of 3 deltas
        fci(0, 1, 0, 0, b"\x40\x01\x00"),  # large delta cut in half
        fci(0, 1, 0, 0, b"\x60\x01"),  # run of the reserved symbol
        fci(0, 1, 0, 0, b"\xf0\x00"),  # 2-bit vector starting with the reserved symbol
    ],
)
def test_malformed_reports_raise_one_typed_error(raw: bytes) -> None:
    with pytest.raises(MalformedFeedback):
        parse_feedback(raw)
    assert issubclass(MalformedFeedback, MalformedPacket)
    assert issubclass(MalformedFeedback, ValueError)


def test_every_truncation_of_a_valid_report_is_rejected() -> None:
    raw = build_feedback(7, 3, 1, [250, None, -5000, 250_000, None, 1_000_000])
    unpadded = len(raw.rstrip(b"\x00"))
    for cut in range(unpadded):
        with pytest.raises(MalformedFeedback):
            parse_feedback(raw[:cut])


@given(st.binary(max_size=300))
def test_fuzz_parse_feedback_raises_only_malformed(raw: bytes) -> None:
    try:
        report = parse_feedback(raw)
    except MalformedFeedback:
        return
    assert 0 < len(report.arrivals) <= 0xFFFF


@given(st.binary(min_size=8, max_size=8), st.binary(max_size=200))
def test_fuzz_parse_feedback_with_a_plausible_header(header: bytes, body: bytes) -> None:
    raw = header[:2] + (1 + header[2] % 40).to_bytes(2, "big") + header[4:] + body
    with contextlib.suppress(MalformedFeedback):
        parse_feedback(raw)


# --- building -------------------------------------------------------------------------------


arrival_lists = st.lists(
    st.one_of(st.none(), st.integers(-0x8000, 0x7FFF), st.integers(0, 0xFF)),
    min_size=1,
    max_size=400,
)


@given(
    st.integers(0, 0xFFFF),
    st.integers(-(1 << 23), (1 << 23) - 1),
    st.integers(0, 0xFF),
    arrival_lists,
)
def test_build_parse_round_trip(
    base: int, reference: int, count: int, steps: list[int | None]
) -> None:
    arrivals: list[int | None] = []
    ticks = 0
    for step in steps:
        if step is None:
            arrivals.append(None)
        else:
            ticks += step
            arrivals.append(ticks * DELTA_TICK_US)
    raw = build_feedback(base, reference, count, arrivals)
    assert len(raw) % 4 == 0
    report = parse_feedback(raw)
    assert report == TransportFeedback(base, reference, count, arrivals)


def test_build_uses_compact_chunks() -> None:
    # 100 lost then 100 received (small): two run length chunks.
    raw = build_feedback(0, 0, 0, [None] * 100 + [250] * 1 + [250] * 99)
    assert raw[8:12] == bytes.fromhex("0064") + bytes.fromhex("2064")
    # Mixed small and large: 2-bit vectors.
    raw = build_feedback(0, 0, 0, [250, 100_000, 100_250])
    assert raw[8] >> 6 == 0b11


def test_build_rounds_to_250_us() -> None:
    assert parse_feedback(build_feedback(0, 0, 0, [374, 376, None])).arrivals == [250, 500, None]


@pytest.mark.parametrize("arrivals", [[], [None] * 0x10000, [0, 0x8000 * 250], [0, -0x8001 * 250]])
def test_build_rejects_what_does_not_fit(arrivals: list[int | None]) -> None:
    with pytest.raises(ValueError):
        build_feedback(0, 0, 0, arrivals)


def test_build_rejects_a_reference_time_out_of_range() -> None:
    with pytest.raises(ValueError):
        build_feedback(0, 1 << 24, 0, [0])


def test_build_feedback_packet_needs_a_padded_fci() -> None:
    with pytest.raises(ValueError):
        build_feedback_packet(1, 2, b"\x00" * 9)


# --- sequencer and matching -----------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, 3, 1000, 1 << 17])
def test_history_capacity_must_be_a_power_of_two(capacity: int) -> None:
    with pytest.raises(ValueError):
        TransportSequencer(capacity)


def test_sequence_numbers_wrap() -> None:
    sequencer = TransportSequencer(first_sequence=0xFFFE)
    assert [sequencer.next_sequence(i, 100) for i in range(4)] == [0xFFFE, 0xFFFF, 0, 1]
    assert sequencer.last_sequence == 1


def test_match_across_sequence_wraparound() -> None:
    sequencer = TransportSequencer(first_sequence=0xFFFE)
    for i in range(4):
        sequencer.next_sequence(1_000_000 + 1000 * i, 1000 + i, probe_cluster=i % 2 - 1)
    report = parse_feedback(build_feedback(0xFFFE, 10, 0, [5000, None, 7000, 8000]))
    results = match_feedback(sequencer, report)
    base = 10 * REFERENCE_TIME_TICK_US
    assert results == [
        PacketResult(0xFFFE, 1_000_000, base + 5000, 1000, -1),
        PacketResult(0xFFFF, 1_001_000, None, 1001, 0),
        PacketResult(0, 1_002_000, base + 7000, 1002, -1),
        PacketResult(1, 1_003_000, base + 8000, 1003, 0),
    ]


def test_each_packet_is_reported_once_and_a_late_arrival_still_counts() -> None:
    sequencer = TransportSequencer()
    for i in range(3):
        sequencer.next_sequence(i * 1000, 500)
    first = match_feedback(sequencer, parse_feedback(build_feedback(0, 0, 0, [250, None])))
    assert [(r.sequence, r.arrival_time_us) for r in first] == [(0, 250), (1, None)]
    again = match_feedback(sequencer, parse_feedback(build_feedback(0, 0, 1, [250, None, 750])))
    assert [(r.sequence, r.arrival_time_us) for r in again] == [(2, 750)]
    late = match_feedback(sequencer, parse_feedback(build_feedback(1, 0, 2, [500])))
    assert [(r.sequence, r.arrival_time_us) for r in late] == [(1, 500)]


def test_unknown_and_overwritten_sequences_are_skipped() -> None:
    sequencer = TransportSequencer(capacity=4)
    for i in range(6):
        sequencer.next_sequence(i, 100)
    # 0 and 1 were overwritten by 4 and 5; 6 and 7 were never sent.
    report = parse_feedback(build_feedback(0, 0, 0, [250] * 8))
    assert [r.sequence for r in match_feedback(sequencer, report)] == [2, 3, 4, 5]


def test_reference_time_wraparound_keeps_arrivals_continuous() -> None:
    sequencer = TransportSequencer()
    sequencer.next_sequence(0, 100)
    sequencer.next_sequence(64_000, 100)
    before = match_feedback(sequencer, parse_feedback(build_feedback(0, 0xFFFFFF, 0, [1000])))
    after = match_feedback(sequencer, parse_feedback(build_feedback(1, 0, 1, [1000])))
    gap = after[0].arrival_time_us - before[0].arrival_time_us  # type: ignore[operator]
    assert gap == REFERENCE_TIME_TICK_US
    # A report arriving out of order steps back instead of jumping 12 days ahead.
    assert sequencer.unwrap_reference_time(0xFFFFFE) == sequencer.unwrap_reference_time(0) - 2
