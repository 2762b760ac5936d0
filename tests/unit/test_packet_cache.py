"""sfu.packet_cache: the per-stream ring answering NACKs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu.packet_cache import DEFAULT_CAPACITY, PacketCache


@pytest.mark.parametrize("capacity", [0, -1, -4, 3, 6, 1000])
def test_capacity_must_be_a_power_of_two(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        PacketCache[str, str](capacity)


@pytest.mark.parametrize("capacity", [1, 2, 64, 1024])
def test_power_of_two_capacities_accepted(capacity: int) -> None:
    cache = PacketCache[int, str](capacity)
    cache.put(5, 50, "ctx")
    assert cache.get(5) == (50, "ctx")


def test_get_of_an_unknown_sequence_is_none() -> None:
    cache = PacketCache[str, str](8)
    assert cache.get(0) is None
    assert cache.get(7) is None
    cache.put(3, "three", "ctx")
    assert cache.get(11) is None  # same slot, other sequence number
    assert cache.get(3) == ("three", "ctx")


def test_put_replaces_the_older_packet_in_the_slot() -> None:
    cache = PacketCache[str, str](8)
    cache.put(1, "a", "ctx")
    cache.put(9, "b", "ctx")
    assert cache.get(1) is None
    assert cache.get(9) == ("b", "ctx")


def test_same_sequence_overwritten() -> None:
    cache = PacketCache[str, str](8)
    cache.put(4, "first", "ctx")
    cache.put(4, "retransmission", "ctx")
    assert cache.get(4) == ("retransmission", "ctx")


def test_default_capacity_holds_a_full_window_across_wraparound() -> None:
    cache = PacketCache[int, str]()
    first = 65536 - DEFAULT_CAPACITY // 2
    seqs = [(first + i) & 0xFFFF for i in range(DEFAULT_CAPACITY)]
    for i, seq in enumerate(seqs):
        cache.put(seq, i, f"segment {i // 100}")
    assert [cache.get(seq) for seq in seqs] == [(i, f"segment {i // 100}")
                                                 for i in range(DEFAULT_CAPACITY)]
    cache.put((first + DEFAULT_CAPACITY) & 0xFFFF, -1, "ctx")
    assert cache.get(first) is None
    assert cache.get((first + 1) & 0xFFFF) == (1, "segment 0")


def test_sequence_zero_is_a_valid_key() -> None:
    cache = PacketCache[str, str](4)
    cache.put(0, "zero", "ctx")
    assert cache.get(0) == ("zero", "ctx")
    assert cache.get(4) is None


@given(st.lists(st.integers(0, 0xFFFF), max_size=80), st.sampled_from([1, 4, 16, 64]))
def test_matches_a_model(seqs: list[int], capacity: int) -> None:
    cache = PacketCache[int, int](capacity)
    model: dict[int, tuple[int, int]] = {}  # slot -> (seq, order)
    for order, seq in enumerate(seqs):
        cache.put(seq, seq, order)  # the context (here: when it was put) travels with it
        model[seq % capacity] = (seq, order)
    for seq in set(seqs) | {0, 1, 0xFFFF}:
        stored = model.get(seq % capacity)
        expected = stored if stored is not None and stored[0] == seq else None
        assert cache.get(seq) == expected
