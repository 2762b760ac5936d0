"""What a signaling session asks before hosting a room: here, or on which node?

Kept free of Redis so that the session (signaling/session.py) depends only on
this small interface; the cluster node (node.py) implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RoomElsewhere(Exception):  # an outcome (the room is elsewhere), not a failure
    """The room is hosted by another node: the socket goes there (proxy.py)."""

    def __init__(self, room: str, owner: str, url: str) -> None:
        super().__init__(f"room {room} is hosted by node {owner} ({url})")
        self.room, self.owner, self.url = room, owner, url


class Placement(Protocol):
    async def place(self, room: str) -> None:
        """Returns when this node hosts ``room``; raises ``RoomElsewhere`` otherwise."""


@dataclass(frozen=True)
class Handoff:
    """A session's join that belongs to another node, with the frame to replay there."""

    where: RoomElsewhere
    frame: str
