"""Retransmissions that transport-cc feedback reports lost are sent again, a bounded number
of times (a receiver that asks for a hole only once would otherwise wait for it)."""

from __future__ import annotations

from sfu.bandwidth import SubscriberBandwidth
from sfu.twcc import build_feedback, build_feedback_packet


class RecordingOwner:
    def __init__(self) -> None:
        self.repaired: list[int] = []

    def repair(self, sequence: int) -> None:
        self.repaired.append(sequence)


def _feedback(base: int, arrivals: list[int | None], count: int) -> bytes:
    return build_feedback_packet(1, 2, build_feedback(base, 0, count, arrivals))


def test_a_repair_reported_lost_goes_back_to_its_owner_and_one_that_arrived_does_not() -> None:
    bandwidth = SubscriberBandwidth()
    owner = RecordingOwner()
    first = int.from_bytes(bandwidth.stamp(1200), "big")
    bandwidth.note_repair(first, owner, sequence=4000)
    second = int.from_bytes(bandwidth.stamp(1200), "big")
    bandwidth.note_repair(second, owner, sequence=4001)
    bandwidth.stamp(1200)  # an ordinary packet after them
    bandwidth.on_rtcp(_feedback(first, [None, 1000, 2000], count=1))
    assert owner.repaired == [4000]
    assert bandwidth.repairs_lost == 1
    bandwidth.on_rtcp(_feedback(first, [None, 1000, 2000], count=2))  # the same news again
    assert owner.repaired == [4000]


def test_feedback_for_ordinary_packets_repairs_nothing() -> None:
    bandwidth = SubscriberBandwidth()
    owner = RecordingOwner()
    base = int.from_bytes(bandwidth.stamp(1200), "big")
    bandwidth.stamp(1200)
    bandwidth.on_rtcp(_feedback(base, [None, None], count=1))
    assert owner.repaired == [] and bandwidth.repairs_lost == 0
