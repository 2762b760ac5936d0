"""A client that stops reading its events is let go instead of queued for without limit."""

from __future__ import annotations

from sfu.aiortc_bridge import IceSettings
from sfu.participant import MAX_PENDING_EVENTS, Participant
from sfu.stats import SfuCounters


async def test_a_client_that_reads_no_events_leaves_once_its_queue_is_full() -> None:
    counters = SfuCounters()
    failed: list[Participant] = []
    member = Participant(name="tablet", ice=IceSettings(), counters=counters,
                         on_connection_failed=failed.append)
    for index in range(MAX_PENDING_EVENTS * 3):
        member.emit({"type": "chat", "n": index})
    assert member.events.qsize() == MAX_PENDING_EVENTS
    assert failed == [member]  # once, not once per extra event
    assert counters.stalled_clients == 1


async def test_a_client_that_keeps_up_is_never_dropped() -> None:
    failed: list[Participant] = []
    member = Participant(name="tablet", ice=IceSettings(), counters=SfuCounters(),
                         on_connection_failed=failed.append)
    for index in range(MAX_PENDING_EVENTS * 3):
        member.emit({"type": "chat", "n": index})
        member.events.get_nowait()
    assert failed == []
