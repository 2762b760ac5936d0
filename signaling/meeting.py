"""Control-plane state of each meeting: who is in it, their mic/camera/hand, the lock.

The SFU forwards media and knows nothing of hands raised or chat; this module
keeps what the participants *show* each other, per room, and broadcasts its
changes to every session of the room. See docs/protocol.md (room features,
host controls).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Member:
    """One participant as the others see them."""

    participant_id: str
    name: str
    role: str  # "host" or "participant"
    send: Send
    mic: bool = True
    cam: bool = True
    hand: bool = False
    screen: bool = False  # sharing a screen (its second video source)
    # Called to end this member's session (host removal); set by the session.
    remove: Callable[[str], Awaitable[None]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "name": self.name, "role": self.role,
                "mic": self.mic, "cam": self.cam, "hand": self.hand, "screen": self.screen}


@dataclass
class Meeting:
    """The members and lock of one room, in join order."""

    room: str
    members: dict[str, Member] = field(default_factory=dict)
    locked: bool = False

    def describe(self) -> dict[str, Any]:
        return {"locked": self.locked,
                "participants": [m.describe() for m in self.members.values()]}

    async def broadcast(self, message: dict[str, Any], exclude: str | None = None) -> None:
        targets = [m.send(message) for m in self.members.values()
                   if m.participant_id != exclude]
        await asyncio.gather(*targets, return_exceptions=True)

    async def state_changed(self, member: Member) -> None:
        await self.broadcast({"type": "participant_state", **member.describe()})


class MeetingRegistry:
    """All meetings of one server process, created on first join, dropped when empty."""

    def __init__(self) -> None:
        self.meetings: dict[str, Meeting] = {}

    def get(self, room: str) -> Meeting | None:
        return self.meetings.get(room)

    def enter(self, room: str, member: Member) -> Meeting:
        meeting = self.meetings.get(room)
        if meeting is None:
            meeting = self.meetings[room] = Meeting(room)
        meeting.members[member.participant_id] = member
        return meeting

    def exit(self, room: str, participant_id: str) -> Meeting | None:
        """Removes a member; returns the meeting if others are still in it."""
        meeting = self.meetings.get(room)
        if meeting is None:
            return None
        meeting.members.pop(participant_id, None)
        if not meeting.members:
            del self.meetings[room]
            return None
        return meeting


_REGISTRIES: WeakKeyDictionary[object, MeetingRegistry] = WeakKeyDictionary()


def registry_for(owner: object) -> MeetingRegistry:
    """The registry shared by every session of one SFU service (one per app)."""
    registry = _REGISTRIES.get(owner)
    if registry is None:
        registry = _REGISTRIES[owner] = MeetingRegistry()
    return registry


class RateWindow:
    """At most ``limit`` events in any ``window`` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True
