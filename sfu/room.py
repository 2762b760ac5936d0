"""A room (mediasoup's Router): who is there and which sources each should receive."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from sfu.active_speaker import DominantSpeaker
from sfu.participant import Event, Participant
from sfu.producer import Producer

if TYPE_CHECKING:
    from sfu.pipe import RemoteMember

logger = logging.getLogger(__name__)


SPEAKER_TICK = 0.1  # seconds between two dominant-speaker decisions


class Room:
    """Participants of one meeting; everyone receives every other participant's sources."""

    def __init__(self, room_id: str, max_participants: int) -> None:
        self.id = room_id
        self.max_participants = max_participants
        self.participants: dict[str, Participant] = {}
        # Participants served by another worker (a room larger than one worker, sfu/pipe.py):
        # their sources arrive through pipes; they receive nothing from here.
        self.remote: dict[str, RemoteMember] = {}
        self.speakers = DominantSpeaker()
        self.active_speaker: str | None = None  # participant id
        self._speaker_task: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        return len(self.participants) >= self.max_participants

    def producers(self) -> list[Producer]:
        return [p for member in self.members() for p in member.producers.values()]

    def members(self) -> list[Participant | RemoteMember]:
        return [*self.participants.values(), *self.remote.values()]

    def broadcast(self, event: Event, *, exclude: str | None = None) -> None:
        for member in self.participants.values():
            if member.id != exclude:
                member.emit(event)

    async def add(self, participant: Participant) -> None:
        self.broadcast({"type": "participant_joined", "participant": participant.describe()})
        self.participants[participant.id] = participant
        await self._resubscribe([participant])

    async def sources_changed(self, publisher: Participant | RemoteMember, added: list[Producer],
                              removed: list[Producer]) -> None:
        for producer in added:
            self.broadcast({"type": "source_added", "source": producer.describe()},
                           exclude=publisher.id)
            if producer.kind == "audio":
                producer.level_listener = self.speakers.add
                if self._speaker_task is None:
                    self._speaker_task = asyncio.ensure_future(self._follow_speakers())
        for producer in removed:
            self.speakers.remove(producer.id)
        for producer in removed:
            self.broadcast({"type": "source_removed", "source_id": producer.id,
                            "participant_id": publisher.id}, exclude=publisher.id)
        if added or removed:
            await self._resubscribe([m for m in self.participants.values() if m is not publisher])

    async def remove(self, participant: Participant) -> None:
        if self.participants.pop(participant.id, None) is None:
            return
        removed = await participant.close()
        for producer in removed:
            self.speakers.remove(producer.id)
            self.broadcast({"type": "source_removed", "source_id": producer.id,
                            "participant_id": participant.id})
        self.broadcast({"type": "participant_left", "participant_id": participant.id})
        await self._resubscribe(list(self.participants.values()))

    def add_remote(self, member: RemoteMember) -> None:
        self.broadcast({"type": "participant_joined", "participant": member.describe()})
        self.remote[member.id] = member

    async def remove_remote(self, member_id: str) -> None:
        """A participant of another worker left: their piped sources leave with them."""
        member = self.remote.pop(member_id, None)
        if member is None:
            return
        removed = list(member.producers.values())
        member.producers.clear()
        for producer in removed:
            producer.close()
        await self.sources_changed(member, [], removed)
        self.broadcast({"type": "participant_left", "participant_id": member_id})

    async def _follow_speakers(self) -> None:
        """Announce the dominant speaker; each subscriber's allocator puts them first."""
        while True:
            await asyncio.sleep(SPEAKER_TICK)
            source = self.speakers.tick(time.monotonic())
            if source is None:
                continue
            speaker = next((m for m in self.members()
                            if any(p.id == source for p in m.producers.values())), None)
            if speaker is None or speaker.id == self.active_speaker:
                continue
            self.active_speaker = speaker.id
            self.broadcast({"type": "active_speaker", "participant_id": speaker.id,
                            "source_id": source})
            for member in self.participants.values():
                member.set_active_speaker(speaker.id)

    def close(self) -> None:
        if self._speaker_task is not None:
            self._speaker_task.cancel()
            self._speaker_task = None

    async def _resubscribe(self, members: list[Participant]) -> None:
        """Tell each member which sources to receive; one member's failure spares the others."""
        sources = self.producers()

        async def update(member: Participant) -> None:
            try:
                await member.set_wanted_sources(
                    [p for p in sources if p.participant_id != member.id])
            except Exception:
                logger.exception("renegotiation for %s failed", member.id)

        await asyncio.gather(*(update(m) for m in members))
