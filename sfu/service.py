"""The narrow async API the signaling server calls: the seam between control and media plane.

Everything that crosses it is plain data (ids, SDP strings, JSON-ready
dicts) so that a room can later live in another worker process or node
behind the same calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfu.aiortc_bridge import IceSettings, self_check
from sfu.allocator import SourceConstraints
from sfu.errors import RoomFull, UnknownParticipant
from sfu.participant import Event, Participant
from sfu.room import Room
from sfu.stats import SfuCounters

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SfuSettings:
    ice: IceSettings = field(default_factory=IceSettings)
    max_participants_per_room: int = 100


@dataclass
class JoinResult:
    participant_id: str
    room_id: str
    participants: list[dict[str, str]]
    sources: list[dict[str, str]]
    events: asyncio.Queue[Event]


class SfuApi(Protocol):
    """What the signaling server calls: an in-process ``SfuService``, or the pool of worker
    processes speaking to one each (signaling/workers.py, docs/ipc.md)."""

    async def join(self, room_id: str, name: str) -> JoinResult: ...
    async def publish(self, participant_id: str, offer_sdp: str) -> str: ...
    async def answer_subscription(self, participant_id: str, revision: int,
                                  answer_sdp: str) -> None: ...
    def set_constraints(self, participant_id: str, sources: dict[str, SourceConstraints],
                        order: list[str]) -> None: ...
    async def leave(self, participant_id: str) -> None: ...
    def room_size(self, room_id: str) -> int: ...
    def unavailable(self) -> str | None: ...
    def stats(self) -> dict[str, Any]: ...
    async def current_stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class SfuService:
    """Rooms of one process. Every method is safe to call with hostile input."""

    def __init__(self, settings: SfuSettings | None = None) -> None:
        self.settings = settings or SfuSettings()
        self.counters = SfuCounters()
        self.rooms: dict[str, Room] = {}
        self._where: dict[str, Room] = {}
        self._background: set[asyncio.Task[None]] = set()

    @staticmethod
    def check_environment() -> None:
        """Fail at start-up, not mid-meeting, if aiortc's internals moved."""
        self_check()

    def room_for(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id, self.settings.max_participants_per_room)
        return room

    def room_size(self, room_id: str) -> int:
        """Participants of a room served here (0 for an unknown room)."""
        room = self.rooms.get(room_id)
        return len(room.participants) if room is not None else 0

    def unavailable(self) -> str | None:
        """Why no room can be served now (readiness); None: ready."""
        return None

    async def join(self, room_id: str, name: str) -> JoinResult:
        room = self.room_for(room_id)
        if room.full:
            raise RoomFull(f"room {room_id} already has {room.max_participants} participants")
        participant = Participant(name=name, ice=self.settings.ice, counters=self.counters,
                                  on_connection_failed=self._connection_failed)
        others = [m.describe() for m in room.members()]
        sources = [p.describe() for p in room.producers()]
        self._where[participant.id] = room
        await room.add(participant)
        return JoinResult(participant.id, room_id, others, sources, participant.events)

    def _participant(self, participant_id: str) -> tuple[Room, Participant]:
        room = self._where.get(participant_id)
        member = room.participants.get(participant_id) if room else None
        if room is None or member is None:
            raise UnknownParticipant(f"participant {participant_id} is not in a room")
        return room, member

    async def publish(self, participant_id: str, offer_sdp: str) -> str:
        room, member = self._participant(participant_id)
        answer, added, removed = await member.publish(offer_sdp)
        await room.sources_changed(member, added, removed)
        return answer

    async def answer_subscription(self, participant_id: str, revision: int,
                                  answer_sdp: str) -> None:
        _, member = self._participant(participant_id)
        await member.accept_subscribe_answer(revision, answer_sdp)

    def set_constraints(self, participant_id: str, sources: dict[str, SourceConstraints],
                        order: list[str]) -> None:
        """How the subscriber shows each source (visible, tile height, on stage)."""
        _, member = self._participant(participant_id)
        member.set_constraints(sources, order)

    async def leave(self, participant_id: str) -> None:
        room = self._where.pop(participant_id, None)
        if room is None:
            return
        member = room.participants.get(participant_id)
        if member is not None:
            await room.remove(member)
        if not room.participants:
            room.close()
            self.rooms.pop(room.id, None)

    def _connection_failed(self, member: Participant) -> None:
        member.emit({"type": "left", "reason": "connection_failed"})
        task = asyncio.ensure_future(self.leave(member.id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stats(self) -> dict[str, Any]:
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.values()),
            "producers": sum(len(r.producers()) for r in self.rooms.values()),
            "sources": {p.id: {"kind": p.kind, "room": room.id, "layers": p.layer_stats(),
                               "consumers": len(p.consumers),
                               "piped": p.participant_id in room.remote}  # from another worker
                        for room in self.rooms.values() for p in room.producers()},
            "subscribers": {m.id: m.allocation_stats() for room in self.rooms.values()
                            for m in room.participants.values()},
            "counters": self.counters.as_dict(),
        }

    async def current_stats(self) -> dict[str, Any]:
        return self.stats()

    async def close(self) -> None:
        for participant_id in list(self._where):
            await self.leave(participant_id)
