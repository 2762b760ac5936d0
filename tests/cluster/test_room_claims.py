"""Registry, room claims, routing and room events against a real Redis (no visio server)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.cluster.claims import RoomClaims
from signaling.cluster.config import ClusterSettings
from signaling.cluster.events import BadRoomEvent, RoomEvent
from signaling.cluster.node import (
    DRAIN_MIGRATE,
    REDIS_TIMEOUT,
    ClusterNode,
    ClusterUnavailable,
)
from signaling.cluster.placement import RoomElsewhere
from signaling.cluster.registry import NodeRecord, NodeRegistry
from tests.cluster.conftest import RedisServer

TTL = 0.6  # short, so that expiry is observed quickly; heartbeat well below it
HEARTBEAT = 0.15


def settings(server: RedisServer, node_id: str) -> ClusterSettings:
    return ClusterSettings(redis_url=server.url, node_id=node_id,
                           advertise_url=f"http://{node_id}.test:8080", heartbeat=HEARTBEAT,
                           ttl=TTL)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


class FakeRooms:
    """The rooms a node hosts (what the meeting registry tells a real node)."""

    def __init__(self) -> None:
        self.rooms: dict[str, int] = {}
        self.broadcasts: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[tuple[str, str]] = []

    def hosted(self) -> dict[str, int]:
        return dict(self.rooms)

    async def broadcast(self, room: str, message: dict[str, Any]) -> None:
        self.broadcasts.append((room, message))

    async def close_room(self, room: str, reason: str) -> int:
        self.closed.append((room, reason))
        self.rooms.pop(room, None)
        return 1


def make_node(server: RedisServer, node_id: str) -> tuple[ClusterNode, FakeRooms]:
    rooms = FakeRooms()
    return ClusterNode(settings(server, node_id), rooms.hosted, rooms.broadcast,
                       rooms.close_room), rooms


async def start(*nodes: ClusterNode) -> None:
    """What the app does: connect (checks Redis) first, then register and beat."""
    for node in nodes:
        await node.connect()
        await node.start()


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_registry_entry_expires_without_heartbeats(redis_server: RedisServer,
                                                          redis: Redis) -> None:
    registry = NodeRegistry(redis, settings(redis_server, "a"))
    await registry.announce(NodeRecord("a", "http://a:1", rooms=2, participants=7))
    await NodeRegistry(redis, settings(redis_server, "b")).announce(NodeRecord("b", "http://b:1"))
    assert [n.node_id for n in await registry.nodes()] == ["a", "b"]
    assert await registry.get("a") == NodeRecord("a", "http://a:1", rooms=2, participants=7)
    await asyncio.sleep(TTL + 0.2)
    assert await registry.nodes() == []
    assert await registry.get("a") is None


async def test_an_unreadable_registry_entry_is_skipped(redis_server: RedisServer,
                                                      redis: Redis) -> None:
    registry = NodeRegistry(redis, settings(redis_server, "a"))
    await registry.announce(NodeRecord("a", "http://a:1"))
    await redis.set("visio:node:broken", "{not json")
    await redis.set("visio:node:partial", json.dumps({"node_id": "partial"}))
    assert [n.node_id for n in await registry.nodes()] == ["a"]


async def test_concurrent_claims_agree_on_one_owner(redis_server: RedisServer,
                                                   redis: Redis) -> None:
    claims = RoomClaims(redis, settings(redis_server, "x"))
    registry = NodeRegistry(redis, settings(redis_server, "x"))
    candidates = [f"n{i}" for i in range(20)]
    for node_id in candidates:
        await registry.announce(NodeRecord(node_id, f"http://{node_id}:1"))
    owners = await asyncio.gather(*(claims.claim("maths", c) for c in candidates))
    assert len(set(owners)) == 1 and owners[0] in candidates
    assert await claims.owner("maths") == owners[0]


async def test_a_claim_of_a_dead_node_is_taken_over(redis_server: RedisServer,
                                                   redis: Redis) -> None:
    cfg = settings(redis_server, "a")
    claims, registry = RoomClaims(redis, cfg), NodeRegistry(redis, cfg)
    await registry.announce(NodeRecord("a", "http://a:1"))
    await registry.announce(NodeRecord("b", "http://b:1"))
    assert await claims.claim("maths", "a") == "a"
    assert await claims.claim("maths", "b") == "a"  # a is alive: it keeps the room
    await registry.withdraw("a")  # a's entry expired (a died), its claim has not yet
    assert await redis.pttl(cfg.room_key("maths")) > 0
    assert await claims.claim("maths", "b") == "b"
    assert await claims.refresh(["maths"], "a") == {"maths"}  # a learns it lost the room
    assert await claims.refresh(["maths"], "b") == set()


async def test_a_claim_expires_unless_refreshed_and_only_its_owner_releases_it(
        redis_server: RedisServer, redis: Redis) -> None:
    claims = RoomClaims(redis, settings(redis_server, "a"))
    assert await claims.claim("maths", "a") == "a"
    for _ in range(4):  # refreshed across more than one TTL: still there
        await asyncio.sleep(TTL / 2)
        assert await claims.refresh(["maths"], "a") == set()
    assert await claims.owner("maths") == "a"
    assert not await claims.release("maths", "b")
    assert await claims.owner("maths") == "a"
    assert await claims.release("maths", "a")
    assert await claims.owner("maths") is None
    assert await claims.claim("physics", "a") == "a"
    await asyncio.sleep(TTL + 0.2)
    assert await claims.owner("physics") is None
    assert await claims.refresh(["physics"], "a") == set()  # vanished, nobody took it: a's again
    assert await claims.owner("physics") == "a"


async def test_a_redis_restart_loses_no_room(redis_server: RedisServer, redis: Redis) -> None:
    a, rooms_a = make_node(redis_server, "a")
    await start(a)
    try:
        await a.route("maths")
        rooms_a.rooms["maths"] = 4
        await a.beat()
        await redis.flushall()  # what a Redis restarted without persistence looks like
        await a.beat()
        assert rooms_a.closed == [] and a.owned == {"maths"}
        assert await a.claims.owner("maths") == "a"
        assert await a.registry.get("a") is not None
    finally:
        await a.stop()


async def test_route_hosts_here_or_names_the_owner_then_takes_over_a_dead_one(
        redis_server: RedisServer) -> None:
    a, rooms_a = make_node(redis_server, "a")
    b, _ = make_node(redis_server, "b")
    await start(a, b)
    try:
        await a.route("maths")  # free: a takes it
        rooms_a.rooms["maths"] = 3
        with pytest.raises(RoomElsewhere) as elsewhere:
            await b.route("maths")
        assert (elsewhere.value.owner, elsewhere.value.url) == ("a", "http://a.test:8080")
        await asyncio.sleep(TTL * 2)  # a's heartbeat keeps the claim past its TTL
        with pytest.raises(RoomElsewhere):
            await b.route("maths")
        a_task = a._task
        assert a_task is not None
        a_task.cancel()  # a stops beating, as if killed (nothing withdrawn or released)
        assert await b.wait_until_gone("a")
        await b.route("maths")  # a's entry expired: b claims the room
        assert await b.claims.owner("maths") == "b"
        await asyncio.sleep(HEARTBEAT * 3)
        assert "maths" in b.owned
        await a.beat()  # a comes back (a long stall, not a death): it must let the room go
        assert rooms_a.closed == [("maths", "room moved: reconnect")]
        assert a.counters.claims_lost == 1 and "maths" not in a.owned
        assert await b.claims.owner("maths") == "b"
    finally:
        await b.stop()
        await a.stop()


async def test_an_emptied_room_is_released_and_a_stopped_node_leaves_at_once(
        redis_server: RedisServer) -> None:
    a, rooms_a = make_node(redis_server, "a")
    b, _ = make_node(redis_server, "b")
    await start(a, b)
    try:
        await a.route("maths")
        rooms_a.rooms["maths"] = 1
        await a.beat()
        assert a.owned == {"maths"}
        a._fresh.clear()  # the join grace is over
        del rooms_a.rooms["maths"]  # the last participant left
        await a.beat()
        assert await a.claims.owner("maths") is None
        await b.beat()
        assert [n.node_id for n in b.nodes] == ["a", "b"]
    finally:
        await a.stop()
    assert await b.registry.get("a") is None
    await b.stop()


async def test_a_draining_node_sends_new_rooms_to_the_least_loaded_other_node(
        redis_server: RedisServer, redis: Redis) -> None:
    a, rooms_a = make_node(redis_server, "a")
    b, rooms_b = make_node(redis_server, "b")
    c, rooms_c = make_node(redis_server, "c")
    rooms_b.rooms["busy"] = 40
    rooms_c.rooms["quiet"] = 2
    await start(a, b, c)
    try:
        await a.route("maths")
        rooms_a.rooms["maths"] = 5
        await redis.set(a.settings.drain_key("a"), "finish")  # what `visio drain a` writes
        await a.beat()
        assert a.draining and (await a.registry.get("a") or NodeRecord("", "")).draining
        await a.route("maths")  # an existing room stays until it finishes
        with pytest.raises(RoomElsewhere) as elsewhere:
            await a.route("history")  # a new room goes to c, the least loaded
        assert elsewhere.value.owner == "c"
        await c.route("history")  # the relayed join lands on c, which hosts it
        await a.drain(DRAIN_MIGRATE)
        assert rooms_a.closed == [("maths", "node draining: reconnect")]
        assert await a.claims.owner("maths") is None
        rooms_a.rooms["maths"] = 1  # a socket still closing: its room must not stick here
        await a.beat()
        assert await a.claims.owner("maths") is None
        with pytest.raises(RoomElsewhere):  # its participant reconnects through a
            await a.route("maths")
    finally:
        for node in (a, b, c):
            await node.stop()


async def test_room_events_reach_the_hosting_node_only(redis_server: RedisServer) -> None:
    a, rooms_a = make_node(redis_server, "a")
    b, rooms_b = make_node(redis_server, "b")
    await start(a, b)
    try:
        rooms_a.rooms["maths"] = 2
        notice = {"type": "chat", "participant_id": "", "name": "visio", "text": "5 min left"}
        assert await b.tell_room("maths", "broadcast", message=notice) == 2  # two listeners
        await b.tell_room("maths", "close", reason="booking cancelled")
        await b.tell_room("elsewhere", "close")
        await b.redis.publish(b.settings.events_channel, "{bad")
        await eventually(lambda: bool(rooms_a.closed), 5, "the close event")
        assert rooms_a.broadcasts == [("maths", notice)]
        assert rooms_a.closed == [("maths", "booking cancelled")]
        assert rooms_b.broadcasts == [] and rooms_b.closed == []
        with pytest.raises(BadRoomEvent):
            await b.tell_room("maths", "broadcast", message={"no": "type"})
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.parametrize("text", ['[]', '{"room": "", "kind": "close", "origin": "a"}',
                                  '{"room": "r", "kind": "explode", "origin": "a"}',
                                  '{"room": "r", "kind": "close", "origin": 3}',
                                  '{"room": "r", "kind": "broadcast", "origin": "a", '
                                  '"message": "hi"}'])
def test_malformed_room_events_are_refused(text: str) -> None:
    with pytest.raises(BadRoomEvent):
        RoomEvent.from_json(text)


async def test_a_frozen_redis_fails_a_placement_quickly_and_ends_no_room(
        redis_server: RedisServer) -> None:
    a, rooms_a = make_node(redis_server, "a")
    await start(a)
    try:
        await a.route("maths")
        rooms_a.rooms["maths"] = 4
        redis_server.process.send_signal(signal.SIGSTOP)  # Redis hangs: no answer, no error
        try:
            started = time.monotonic()
            with pytest.raises(RedisError):
                await a.route("history")
            assert time.monotonic() - started < REDIS_TIMEOUT + 1
            await asyncio.sleep(HEARTBEAT * 2)
            assert rooms_a.closed == []  # the room in progress goes on
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        await eventually(lambda: a.counters.heartbeat_failures > 0, 5, "a failed heartbeat")
        failures = a.counters.heartbeat_failures
        await eventually(lambda: a.counters.heartbeats > 0 and "maths" in a.owned
                         and a.counters.heartbeat_failures == failures, 5, "beats again")
        await a.route("history")  # placements work again
    finally:
        await a.stop()


async def test_connect_refuses_an_unreachable_redis() -> None:
    from tests.conftest import free_port

    node = ClusterNode(ClusterSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                       node_id="a", advertise_url="http://a:1"),
                       dict, FakeRooms().broadcast, FakeRooms().close_room)
    with pytest.raises(ClusterUnavailable, match="unreachable"):
        await node.connect()


@pytest.mark.parametrize("kwargs", [{"node_id": ""}, {"node_id": "a b"}, {"node_id": "a:b"},
                                    {"advertise_url": "10.0.0.5:8080"},
                                    {"heartbeat": 3.0, "ttl": 3.0}])
def test_bad_cluster_settings_are_refused(kwargs: dict[str, Any]) -> None:
    values: dict[str, Any] = {"redis_url": "redis://r", "node_id": "a",
                              "advertise_url": "http://a:1", **kwargs}
    with pytest.raises(ValueError):
        ClusterSettings(**values)
