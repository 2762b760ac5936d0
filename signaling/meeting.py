"""Control-plane state of each meeting: who is in it, their mic/camera/hand, the lock,
lecture mode and who may present.

The SFU forwards media and knows nothing of hands raised or chat; this module
keeps what the participants *show* each other, per room, and broadcasts its
changes to every session of the room. See docs/protocol.md (room features,
host controls, lecture mode, reconnection).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

Send = Callable[[dict[str, Any]], Awaitable[None]]

# How long the rejoin_key of a participant who dropped out stays good: a
# tablet whose Wi-Fi came back within this time gets its role back.
REJOIN_WINDOW = 120.0


def _new_rejoin_key() -> str:
    return secrets.token_urlsafe(18)


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
    presenter: bool = False  # granted the right to present by a host (lecture mode)
    # Called to end this member's session (host removal); set by the session.
    remove: Callable[[str], Awaitable[None]] | None = None
    # Called when who may publish video changed (lecture mode): the session
    # re-applies its constraints, hiding the videos of those who may not.
    refresh: Callable[[], None] | None = None
    # Proves, on a reconnection, that a new socket is this participant again.
    rejoin_key: str = field(default_factory=_new_rejoin_key)

    def describe(self) -> dict[str, Any]:
        return {"participant_id": self.participant_id, "name": self.name, "role": self.role,
                "mic": self.mic, "cam": self.cam, "hand": self.hand, "screen": self.screen,
                "presenter": self.presenter}


@dataclass
class Meeting:
    """The members, lock and lecture mode of one room, members in join order."""

    room: str
    members: dict[str, Member] = field(default_factory=dict)
    locked: bool = False
    lecture: bool = False  # only hosts and presenters may publish video
    # rejoin_key -> (member who left, when): see redeem().
    departed: dict[str, tuple[Member, float]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"locked": self.locked, "lecture": self.lecture,
                "participants": [m.describe() for m in self.members.values()]}

    def may_publish_video(self, member: Member) -> bool:
        """Lecture mode: cameras and screens are for hosts and presenters only."""
        return not self.lecture or member.role == "host" or member.presenter

    def silenced(self) -> set[str]:
        """Participant ids whose video nobody may receive now."""
        return {m.participant_id for m in self.members.values()
                if not self.may_publish_video(m)}

    def redeem(self, key: str | None, now: float | None = None) -> Member | None:
        """The earlier self of a reconnecting participant, found by its rejoin_key:
        still a member (its old socket not yet noticed gone) or gone for less than
        REJOIN_WINDOW seconds. A key is good for one rejoin."""
        if not key:
            return None
        now = time.monotonic() if now is None else now
        for stale in [k for k, (_, left) in self.departed.items() if now - left > REJOIN_WINDOW]:
            del self.departed[stale]
        gone = self.departed.pop(key, None)
        if gone is not None:
            return gone[0]
        for member in self.members.values():
            if member.rejoin_key and secrets.compare_digest(member.rejoin_key, key):
                member.rejoin_key = _new_rejoin_key()  # the old socket's key is spent
                return member
        return None

    def refresh_all(self) -> None:
        for member in self.members.values():
            if member.refresh is not None:
                member.refresh()

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
        member = meeting.members.pop(participant_id, None)
        if member is not None and member.rejoin_key:  # "": removed by a host
            meeting.departed[member.rejoin_key] = (member, time.monotonic())
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


_M_LINE = re.compile(r"^m=(\w+) (\d+)", re.M)


def offers_video(sdp: str) -> bool:
    """Whether an offer sends video: a ``m=video`` section with a non-zero port
    that is not ``inactive`` or ``recvonly`` (the direction defaults to sendrecv)."""
    sections = re.split(r"(?m)^(?=m=)", sdp)
    for section in sections:
        match = _M_LINE.match(section)
        if match is None or match.group(1) != "video" or match.group(2) == "0":
            continue
        if not re.search(r"(?m)^a=(inactive|recvonly)\s*$", section):
            return True
    return False
