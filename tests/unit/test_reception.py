"""sfu.reception: receiver-report statistics (RFC 3550 A.3/A.8) and NACK holes (RFC 4585)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sfu.reception import MAX_DROPOUT, MAX_NACK_AGE, NackTracker, ReceptionStats

CLOCK = 90_000
STEP = 0.25  # seconds between packets: exact in binary floating point
TICKS = int(STEP * CLOCK)


def feed(stats: ReceptionStats, seqs: list[int], *, first_seq: int | None = None) -> None:
    """Packets sent every STEP seconds and arriving with constant delay."""
    base = seqs[0] if first_seq is None else first_seq
    for seq in seqs:
        index = (seq - base) & 0xFFFF
        stats.add(seq & 0xFFFF, (1000 + index * TICKS) & 0xFFFFFFFF, 100.0 + index * STEP)


# ----------------------------------------------------------------- ReceptionStats


def test_no_loss() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, list(range(100, 200)))
    report = stats.report()
    assert report.fraction_lost == 0
    assert report.packets_lost == 0
    assert report.highest_sequence == 199
    assert report.jitter == 0
    assert stats.packets_received == 100


def test_single_packet() -> None:
    stats = ReceptionStats(CLOCK)
    stats.add(42, 0, 1.0)
    report = stats.report()
    assert (report.fraction_lost, report.packets_lost, report.highest_sequence) == (0, 0, 42)


def test_loss_fraction_and_cumulative_loss() -> None:
    stats = ReceptionStats(CLOCK)
    seqs = [s for s in range(1000, 1100) if s % 10 != 3]  # 10 of 100 lost
    feed(stats, seqs, first_seq=1000)
    report = stats.report()
    assert report.packets_lost == 10
    assert report.fraction_lost == (10 * 256) // 100
    assert report.highest_sequence == 1099


def test_fraction_lost_is_per_interval_cumulative_is_not() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, [s for s in range(0, 50) if s not in (10, 20)], first_seq=0)
    first = stats.report()
    assert (first.fraction_lost, first.packets_lost) == ((2 * 256) // 50, 2)
    feed(stats, list(range(50, 100)), first_seq=0)
    second = stats.report()
    assert (second.fraction_lost, second.packets_lost) == (0, 2)
    feed(stats, [s for s in range(100, 150) if s % 2], first_seq=0)
    third = stats.report()
    assert third.fraction_lost == (25 * 256) // 50
    assert third.packets_lost == 27


def test_fraction_lost_near_total_loss() -> None:
    stats = ReceptionStats(CLOCK)
    stats.add(0, 0, 0.0)
    stats.report()
    stats.add(2000, 0, 1.0)  # 1 received of 2000 expected in this interval
    report = stats.report()
    assert report.fraction_lost == (1999 * 256) // 2000
    assert report.packets_lost == 1999
    assert 0 <= report.fraction_lost <= 255


def test_report_with_no_new_packets() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, [0, 1, 3])
    assert stats.report().fraction_lost == (1 * 256) // 4
    again = stats.report()
    assert again.fraction_lost == 0
    assert again.packets_lost == 1


def test_reordered_packet_fills_the_hole() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, [0, 1, 3, 2, 4], first_seq=0)
    report = stats.report()
    assert report.packets_lost == 0
    assert report.fraction_lost == 0
    assert report.highest_sequence == 4


def test_duplicates_never_make_loss_negative() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, [0, 1, 2, 2, 2, 3], first_seq=0)
    report = stats.report()
    assert report.packets_lost == 0
    assert report.fraction_lost == 0
    assert stats.packets_received == 6


def test_wraparound_counts_a_cycle() -> None:
    stats = ReceptionStats(CLOCK)
    seqs = [(65530 + i) & 0xFFFF for i in range(20)]  # 65530..65535, 0..13
    feed(stats, seqs)
    report = stats.report()
    assert report.highest_sequence == 65536 + 13
    assert report.packets_lost == 0
    assert stats.extended_max_seq == 65536 + 13


def test_loss_across_wraparound() -> None:
    stats = ReceptionStats(CLOCK)
    seqs = [(65530 + i) & 0xFFFF for i in range(20) if i not in (5, 6, 7)]  # 65535, 0, 1 lost
    feed(stats, seqs, first_seq=65530)
    report = stats.report()
    assert report.packets_lost == 3
    assert report.fraction_lost == (3 * 256) // 20
    assert report.highest_sequence == 65536 + 13


def test_several_cycles() -> None:
    stats = ReceptionStats(CLOCK)
    for i in range(200):
        stats.add((i * 1000) & 0xFFFF, 0, 0.0)
    report = stats.report()
    assert report.highest_sequence == 199_000  # three cycles and 2392
    assert report.highest_sequence >> 16 == 3
    assert report.packets_lost == 199_001 - 200


def test_big_jump_restarts_the_sequence() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, list(range(0, 10)))
    stats.add(10 + MAX_DROPOUT + 1, 0, 10.0)
    report = stats.report()
    assert report.packets_lost == 0
    assert report.fraction_lost == 0
    assert report.highest_sequence == 10 + MAX_DROPOUT + 1
    assert stats.packets_received == 1


def test_jump_of_max_dropout_is_loss_not_a_restart() -> None:
    stats = ReceptionStats(CLOCK)
    stats.add(0, 0, 0.0)
    stats.add(MAX_DROPOUT, 0, 1.0)
    report = stats.report()
    assert report.packets_lost == MAX_DROPOUT - 1
    assert report.highest_sequence == MAX_DROPOUT


def test_jitter_is_zero_with_constant_transit() -> None:
    stats = ReceptionStats(CLOCK)
    feed(stats, list(range(500)))
    assert stats.report().jitter == 0


def test_jitter_first_sample_follows_rfc_3550() -> None:
    stats = ReceptionStats(CLOCK)
    stats.add(0, 0, 10.0)
    stats.add(1, 11250, 10.25)  # 0.125 s of media arriving 0.25 s later: D = 11250 ticks
    # J = 0 + (11250 - 0) / 16
    assert stats.report().jitter == 11250 // 16


def test_jitter_grows_with_jittery_arrivals_and_matches_the_estimator() -> None:
    rng = random.Random(7)
    stats = ReceptionStats(CLOCK)
    reference = 0.0
    last_transit: int | None = None
    for i in range(400):
        timestamp = i * TICKS
        arrival = 50.0 + i * STEP + rng.choice([0.0, 0.03125, 0.0625])
        stats.add(i, timestamp, arrival)
        transit = int(arrival * CLOCK) - timestamp
        if last_transit is not None:
            reference += (abs(transit - last_transit) - reference) / 16
        last_transit = transit
    jitter = stats.report().jitter
    assert jitter > 1000  # arrivals vary by up to 62.5 ms = 5625 ticks
    assert abs(jitter - reference) <= 2


def test_jitter_grows_then_decays() -> None:
    stats = ReceptionStats(CLOCK)
    for i in range(20):
        stats.add(i, i * TICKS, i * STEP + (0.125 if i % 2 else 0.0))
    noisy = stats.report().jitter
    assert noisy > 5000  # |D| = 0.125 s = 11250 ticks each packet
    for i in range(20, 200):
        stats.add(i, i * TICKS, i * STEP)
    calm = stats.report().jitter
    assert calm < noisy // 100


def test_reordered_packets_give_no_jitter_sample() -> None:
    stats = ReceptionStats(CLOCK)
    stats.add(0, 0, 0.0)
    stats.add(2, 2 * TICKS, 2 * STEP)
    stats.add(1, TICKS, 50.0)  # very late, out of order: not a jitter sample
    stats.add(3, 3 * TICKS, 3 * STEP)
    assert stats.report().jitter == 0


def test_jitter_survives_rtp_timestamp_wraparound() -> None:
    stats = ReceptionStats(CLOCK)
    start = 0xFFFFFFFF - 10 * TICKS
    for i in range(40):
        stats.add(i, (start + i * TICKS) & 0xFFFFFFFF, 100.0 + i * STEP)
    assert stats.report().jitter == 0


@given(st.integers(0, 0xFFFF), st.lists(st.booleans(), min_size=1, max_size=300))
def test_cumulative_loss_matches_a_model(first: int, received: list[bool]) -> None:
    received[0] = True
    stats = ReceptionStats(CLOCK)
    seqs = [(first + i) & 0xFFFF for i, got in enumerate(received) if got]
    feed(stats, seqs, first_seq=first)
    last = max(i for i, got in enumerate(received) if got)
    report = stats.report()
    assert report.packets_lost == (last + 1) - len(seqs)
    assert report.highest_sequence == first + last
    expected_fraction = ((last + 1 - len(seqs)) << 8) // (last + 1)
    assert report.fraction_lost == min(255, expected_fraction)


# ----------------------------------------------------------------- NackTracker


def test_nack_first_packet_opens_nothing() -> None:
    tracker = NackTracker()
    assert tracker.add(500) is False
    assert tracker.missing == set()


def test_nack_in_order_opens_nothing() -> None:
    tracker = NackTracker()
    assert [tracker.add(s) for s in range(10)] == [False] * 10
    assert tracker.missing == set()


def test_nack_hole() -> None:
    tracker = NackTracker()
    tracker.add(10)
    assert tracker.add(13) is True
    assert tracker.missing == {11, 12}


def test_nack_reordering_fills_holes() -> None:
    tracker = NackTracker()
    tracker.add(10)
    tracker.add(13)
    assert tracker.add(12) is False
    assert tracker.missing == {11}
    assert tracker.add(11) is False
    assert tracker.missing == set()


def test_nack_duplicate_and_old_packets_change_nothing() -> None:
    tracker = NackTracker()
    for seq in (1, 2, 5):
        tracker.add(seq)
    assert tracker.add(5) is False
    assert tracker.add(1) is False
    assert tracker.missing == {3, 4}


def test_nack_second_hole_adds_to_the_first() -> None:
    tracker = NackTracker()
    tracker.add(0)
    tracker.add(2)
    assert tracker.add(5) is True
    assert tracker.missing == {1, 3, 4}


def test_nack_wraparound() -> None:
    tracker = NackTracker()
    tracker.add(65533)
    assert tracker.add(2) is True
    assert tracker.missing == {65534, 65535, 0, 1}
    assert tracker.add(0) is False
    assert tracker.missing == {65534, 65535, 1}


def test_nack_largest_hole_still_tracked() -> None:
    tracker = NackTracker()
    tracker.add(100)
    assert tracker.add(100 + MAX_NACK_AGE) is True
    assert tracker.missing == set(range(101, 100 + MAX_NACK_AGE))


def test_nack_big_jump_resets() -> None:
    tracker = NackTracker()
    tracker.add(0)
    tracker.add(3)
    assert tracker.missing == {1, 2}
    assert tracker.add(3 + MAX_NACK_AGE + 1) is False
    assert tracker.missing == set()
    assert tracker.add(3 + MAX_NACK_AGE + 2) is False  # continues from the new position
    assert tracker.add(3 + MAX_NACK_AGE + 4) is True
    assert tracker.missing == {3 + MAX_NACK_AGE + 3}


def test_nack_old_holes_are_forgotten_when_a_new_hole_opens() -> None:
    tracker = NackTracker()
    tracker.add(0)
    tracker.add(2)  # hole at 1
    for seq in range(3, 600):
        tracker.add(seq)
    assert tracker.add(601) is True  # hole at 600; 1 is now 600 packets old
    assert tracker.missing == {600}


def test_nack_hole_exactly_max_age_old_is_kept() -> None:
    tracker = NackTracker()
    tracker.add(0)
    tracker.add(2)  # hole at 1
    for seq in range(3, MAX_NACK_AGE):
        tracker.add(seq)
    assert tracker.add(1 + MAX_NACK_AGE) is True  # hole at MAX_NACK_AGE; 1 is that old
    assert tracker.missing == {1, MAX_NACK_AGE}
    assert tracker.add(3 + MAX_NACK_AGE) is True  # now 1 is MAX_NACK_AGE + 2 old
    assert tracker.missing == {MAX_NACK_AGE, 2 + MAX_NACK_AGE}


def test_nack_old_packet_far_behind_is_ignored() -> None:
    tracker = NackTracker()
    tracker.add(40000)
    assert tracker.add(40000 - 0x8000) is False  # exactly half a cycle: not newer
    assert tracker.add(40002) is True
    assert tracker.missing == {40001}


def test_nack_stale_hole_is_not_resurrected_after_a_full_cycle() -> None:
    tracker = NackTracker()
    tracker.add(0)
    tracker.add(2)  # hole at 1, never repaired
    for i in range(3, 65536 + 11):  # one full cycle without loss; seq 1 arrives again
        tracker.add(i & 0xFFFF)
    assert tracker.add(12) is True  # new hole at 11
    assert tracker.missing == {11}


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 200), min_size=1, max_size=150),
)
def test_nack_matches_a_model_within_the_window(base: int, offsets: list[int]) -> None:
    """Without big jumps: missing = every sequence after the first one that is not in yet."""
    tracker = NackTracker()
    first = offsets[0]
    seen = {first}
    newest = first
    tracker.add((base + first) & 0xFFFF)
    for offset in offsets[1:]:
        opened = tracker.add((base + offset) & 0xFFFF)
        seen.add(offset)
        if offset > newest:
            assert opened is (offset > newest + 1)
            newest = offset
        else:
            assert opened is False
        expected = {(base + o) & 0xFFFF for o in range(first, newest + 1) if o not in seen}
        assert tracker.missing == expected
