"""Room events that cross nodes: one Redis pub/sub channel, ``visio:room-events``.

Participants of one room all sit on its hosting node (other nodes relay their
sockets there, proxy.py), so the meeting's own events (chat, hands, host
controls, participant state) never need to leave that node. What crosses is
what another node, or an operator's command, has to tell a room it does not
host. Two kinds, and only these:

* ``broadcast``: ``message`` (a server → client protocol message, e.g. a
  ``chat`` from the service) is sent to every participant of the room;
* ``close``: every socket of the room is closed with ``reason``; the clients
  reconnect and the room is placed again (how a drained node migrates its
  rooms, or an operator moves one).

Each node subscribes once and acts only on rooms it hosts; a malformed event
is logged and dropped. Delivery is Redis pub/sub's: at most once, no history.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.cluster.cancel import raise_if_cancelled, stop_task

logger = logging.getLogger(__name__)

EventKind = Literal["broadcast", "close"]
KINDS = ("broadcast", "close")
RESUBSCRIBE_DELAY = 1.0  # seconds between two subscription attempts when Redis is away


class BadRoomEvent(ValueError):
    """A room event that does not follow the format above."""


@dataclass(frozen=True)
class RoomEvent:
    room: str
    kind: EventKind
    origin: str  # the node id that published it
    message: dict[str, Any] = field(default_factory=dict)  # broadcast only
    reason: str = ""  # close only

    def to_json(self) -> str:
        return json.dumps({"room": self.room, "kind": self.kind, "origin": self.origin,
                           "message": self.message, "reason": self.reason},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RoomEvent:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadRoomEvent(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadRoomEvent("not a JSON object")
        room, kind, origin = data.get("room"), data.get("kind"), data.get("origin")
        message, reason = data.get("message", {}), data.get("reason", "")
        if not isinstance(room, str) or not room:
            raise BadRoomEvent("room must be a non-empty string")
        if kind not in KINDS:
            raise BadRoomEvent(f"kind must be one of {KINDS}")
        if not isinstance(origin, str):
            raise BadRoomEvent("origin must be a string")
        if not isinstance(message, dict) or (kind == "broadcast"
                                              and not isinstance(message.get("type"), str)):
            raise BadRoomEvent("a broadcast needs a message object with a type")
        if not isinstance(reason, str):
            raise BadRoomEvent("reason must be a string")
        return cls(room, kind, origin, message, reason)


Deliver = Callable[[RoomEvent], Awaitable[None]]


class RoomBus:
    """Publishes room events and hands the ones received to ``deliver``."""

    def __init__(self, redis: Redis, listener: Redis, channel: str, node_id: str,
                 deliver: Deliver) -> None:
        self._redis = redis
        self._listener = listener  # a client without read timeout: events may be rare
        self._channel = channel
        self._node_id = node_id
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.received = 0

    async def publish(self, room: str, kind: EventKind, *, message: dict[str, Any] | None = None,
                      reason: str = "") -> int:
        """Sends an event to whichever node hosts ``room``; returns how many nodes listened."""
        event = RoomEvent(room, kind, self._node_id, message or {}, reason)
        RoomEvent.from_json(event.to_json())  # the same checks as on receipt
        return int(await self._redis.publish(self._channel, event.to_json()))

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        if not await stop_task(self._task):
            logger.warning("room events: the subscription did not stop within 5 s")

    async def _listen(self) -> None:
        while True:
            try:
                async with self._listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._subscribed.set()
                    async for item in pubsub.listen():
                        if item.get("type") == "message":
                            await self._handle(item["data"])
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                logger.warning("room events: subscription lost (%s); retrying", exc)
                await asyncio.sleep(RESUBSCRIBE_DELAY)

    async def _handle(self, data: str | bytes) -> None:
        try:
            event = RoomEvent.from_json(data)
        except BadRoomEvent as exc:
            logger.warning("room events: dropped a malformed event: %s", exc)
            return
        self.received += 1
        try:
            await self._deliver(event)
        except Exception:
            logger.exception("room events: delivering %s to room %s failed", event.kind,
                             event.room)
