"""This node's life in the cluster: heartbeat, room routing, drain.

Every ``heartbeat`` seconds the node rewrites its registry entry (address,
load, draining) and extends its claims on the rooms it hosts, releasing the
ones that emptied. A ``join`` asks ``route``: the room's live owner if it has
one, else this node claims it — or, while draining, the least-loaded node
that is not. If Redis goes away the node keeps serving the rooms it has and
logs each failed beat; its claims then expire and another node may take a
room over, which is why a lost claim is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.cluster.cancel import raise_if_cancelled, stop_task
from signaling.cluster.claims import RoomClaims
from signaling.cluster.config import ClusterSettings
from signaling.cluster.events import EventKind, RoomBus, RoomEvent
from signaling.cluster.placement import RoomElsewhere
from signaling.cluster.registry import NodeRecord, NodeRegistry

logger = logging.getLogger(__name__)

REDIS_TIMEOUT = 2.0  # seconds: a frozen Redis fails a join or a beat instead of hanging it
CLAIM_GRACE = 10.0  # seconds a fresh claim counts as hosted before the room shows up in meetings
DRAIN_FINISH, DRAIN_MIGRATE = "finish", "migrate"

HostedRooms = Callable[[], dict[str, int]]  # room -> participants, for the rooms this node hosts
Broadcast = Callable[[str, dict[str, object]], Awaitable[None]]
CloseRoom = Callable[[str, str], Awaitable[int]]  # (room, reason) -> sockets closed


@dataclass
class ClusterCounters:
    heartbeats: int = 0
    heartbeat_failures: int = 0
    claims_lost: int = 0
    relays_open: int = 0
    relays_total: int = 0
    relays_failed: int = 0  # hosting node unreachable


class ClusterUnavailable(Exception):
    """Redis cannot be reached at start-up: the node refuses to start rather than run alone."""


class ClusterNode:
    """One visio node's view of, and part in, the cluster."""

    def __init__(self, settings: ClusterSettings, hosted: HostedRooms, broadcast: Broadcast,
                 close_room: CloseRoom, on_drain: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.redis = Redis.from_url(settings.redis_url, decode_responses=True,
                                    socket_connect_timeout=REDIS_TIMEOUT,
                                    socket_timeout=REDIS_TIMEOUT)
        # Pub/sub waits for the next event as long as it takes: its own client, no read timeout.
        self._listener = Redis.from_url(settings.redis_url, decode_responses=True,
                                        socket_connect_timeout=REDIS_TIMEOUT)
        self.registry = NodeRegistry(self.redis, settings)
        self.claims = RoomClaims(self.redis, settings)
        self.bus = RoomBus(self.redis, self._listener, settings.events_channel, self.node_id,
                           self._deliver)
        self.counters = ClusterCounters()
        self.draining = False
        self.drain_mode: str | None = None  # DRAIN_FINISH or DRAIN_MIGRATE once draining
        self.nodes: list[NodeRecord] = []  # the registry as of the last heartbeat
        self.owned: set[str] = set()  # rooms whose claims the last heartbeat held
        self._hosted = hosted
        self._broadcast = broadcast
        self._close_room = close_room
        self._on_drain = on_drain
        self._fresh: dict[str, float] = {}  # room -> monotonic time this node claimed it
        self._moving: set[str] = set()  # migrated away, until their last sockets are gone
        self._task: asyncio.Task[None] | None = None
        self._signalled: set[asyncio.Task[None]] = set()  # drains started by SIGUSR1

    # -- life cycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Checks Redis before anything else starts; ``ClusterUnavailable`` if unreachable."""
        try:
            await self.redis.ping()
            await self.redis.delete(self.settings.drain_key(self.node_id))  # a restart undrains
        except (RedisError, OSError) as exc:
            await self.redis.aclose()
            await self._listener.aclose()
            raise ClusterUnavailable(f"Redis at {_redacted(self.settings.redis_url)} is "
                                     f"unreachable: {exc}") from None

    async def start(self) -> None:
        """Registers this node (call ``connect`` first) and starts the heartbeat."""
        await self.beat()
        await self.bus.start()
        self._task = asyncio.ensure_future(self._beat_forever())
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self._drain_signalled)
        logger.info("cluster: node %s registered at %s (Redis %s)", self.node_id,
                    self.settings.advertise_url, _redacted(self.settings.redis_url))

    def _drain_signalled(self) -> None:
        task = asyncio.ensure_future(self.drain(DRAIN_FINISH))
        self._signalled.add(task)
        task.add_done_callback(self._signalled.discard)

    async def stop(self) -> None:
        """Leaves the cluster at once: entry withdrawn, claims released."""
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        if not await stop_task(self._task):
            logger.warning("cluster: the heartbeat did not stop within 5 s")
        await self.bus.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.registry.withdraw(self.node_id)
            for room in self.owned | set(self._fresh):
                await self.claims.release(room, self.node_id)
        await self.redis.aclose()
        await self._listener.aclose()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                raise_if_cancelled()
                self.counters.heartbeat_failures += 1
                logger.warning("cluster: heartbeat failed (%s); rooms keep running here", exc)

    async def beat(self) -> None:
        """Announce this node, extend the claims of its rooms, release the emptied ones."""
        rooms = self._hosted()
        mode = await self.redis.get(self.settings.drain_key(self.node_id))
        if mode is not None and mode != self.drain_mode:  # finish, then maybe migrate
            await self.drain(str(mode))
        await self.registry.announce(self.record(rooms))
        now = time.monotonic()
        self._fresh = {r: t for r, t in self._fresh.items() if now - t < CLAIM_GRACE}
        self._moving &= set(rooms)
        hosting = (set(rooms) | set(self._fresh)) - self._moving
        lost = await self.claims.refresh(hosting, self.node_id)
        if lost:  # this node looked dead for a while: another one hosts these rooms now
            self.counters.claims_lost += len(lost)
            logger.warning("cluster: lost the claim on rooms %s to another node; their "
                           "participants reconnect there", sorted(lost))
            for room in lost:  # one room, one node: never two halves of a meeting
                self._fresh.pop(room, None)
                await self._close_room(room, "room moved: reconnect")
        for room in self.owned - hosting:
            await self.claims.release(room, self.node_id)
        self.owned = hosting - lost
        self.nodes = await self.registry.nodes()
        self.counters.heartbeats += 1

    def record(self, rooms: dict[str, int] | None = None) -> NodeRecord:
        rooms = self._hosted() if rooms is None else rooms
        return NodeRecord(self.node_id, self.settings.advertise_url, rooms=len(rooms),
                          participants=sum(rooms.values()), draining=self.draining)

    # -- placement ---------------------------------------------------------------------------

    async def route(self, room: str) -> None:
        """Returns when this node hosts ``room`` (claiming it if free); else ``RoomElsewhere``."""
        for _ in range(3):  # an owner can die between the claim and the registry read
            owner = await self.claims.claim(room, self._candidate(room))
            if owner == self.node_id:
                self._fresh[room] = time.monotonic()
                self._moving.discard(room)  # nowhere else to go: it stays
                return
            record = await self.registry.get(owner)
            if record is not None:
                raise RoomElsewhere(room, owner, record.url)
        # Owners kept vanishing between the two reads: the session answers "internal" (retry).
        raise ClusterUnavailable(f"room {room}: its owner changed three times during one join")

    def _candidate(self, room: str) -> str:
        """Who should take ``room`` if nobody hosts it: this node unless it is draining."""
        if not self.draining or (room in self._hosted() and room not in self._moving):
            return self.node_id
        others = [n for n in self.nodes if n.node_id != self.node_id and not n.draining]
        if not others:
            logger.warning("cluster: draining, but no other node takes room %s", room)
            return self.node_id
        return min(others, key=lambda n: (n.participants, n.node_id)).node_id

    async def wait_until_gone(self, node_id: str) -> bool:
        """Waits (at most one TTL and two beats) for a node's entry to expire; True if it did."""
        deadline = time.monotonic() + self.settings.ttl + 2 * self.settings.heartbeat
        while time.monotonic() < deadline:
            if await self.registry.get(node_id) is None:
                return True
            await asyncio.sleep(self.settings.heartbeat / 4)
        return False

    # -- drain -------------------------------------------------------------------------------

    async def drain(self, mode: str = DRAIN_FINISH) -> None:
        """No new rooms here from now on; with ``migrate`` the current ones move too.

        ``finish``: rooms hosted here go on until their last participant leaves.
        ``migrate``: their claims are released and their sockets closed; the
        clients reconnect and the rooms are placed on other nodes.
        """
        self.draining, self.drain_mode = True, mode
        if self._on_drain is not None:
            self._on_drain()
        logger.info("cluster: node %s draining (%s)", self.node_id, mode)
        with contextlib.suppress(RedisError, OSError):
            await self.registry.announce(self.record())
            self.nodes = await self.registry.nodes()
        if mode != DRAIN_MIGRATE:
            return
        for room in list(self._hosted()):
            self._moving.add(room)  # not claimed again while its sockets close
            with contextlib.suppress(RedisError, OSError):
                await self.claims.release(room, self.node_id)
            self._fresh.pop(room, None)
            self.owned.discard(room)
            await self._close_room(room, "node draining: reconnect")

    # -- room events -------------------------------------------------------------------------

    async def tell_room(self, room: str, kind: EventKind, *,
                        message: dict[str, object] | None = None, reason: str = "") -> int:
        return await self.bus.publish(room, kind, message=message, reason=reason)

    async def _deliver(self, event: RoomEvent) -> None:
        if event.room not in self._hosted():
            return
        if event.kind == "broadcast":
            await self._broadcast(event.room, event.message)
        else:
            await self._close_room(event.room, event.reason or "closed by the service")


def _redacted(url: str) -> str:
    """The Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
