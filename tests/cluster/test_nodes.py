"""Two ``visio serve`` nodes on loopback sharing one real Redis: placement, relay, failover.

Must-show 2 of the scale-out issue: a participant who reaches node 2 is
relayed to the room node 1 hosts and decodes the others' video (media goes
straight to node 1); after ``kill -9`` of node 1 its participants reconnect
through node 2, which now hosts the room, and decode each other again
within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from loadtest.signaling_client import SignalingError
from tests.cluster.conftest import RedisServer
from tests.conftest import REPO, ServerProcess, free_port, start_server, stop_server
from tests.media.peer import TestPeer

pytestmark = pytest.mark.media

ROOM = "conseil"
SIZES = {"alice": (320, 240), "bob": (256, 192), "carol": (352, 288)}
FAILOVER_LIMIT = 10.0  # seconds from kill -9 to every participant decoding the others again


def start_node(tmp_path: Path, redis: RedisServer, node_id: str, *extra: str) -> ServerProcess:
    directory = tmp_path / node_id
    directory.mkdir()
    return start_server(directory, "--redis-url", redis.url, "--node-id", node_id, *extra)


def decoding_all(peer: TestPeer, others: list[TestPeer], min_frames: int) -> bool:
    for other in others:
        record = peer.video_from(other.participant_id or "")
        if record is None or record.frames < min_frames:
            return False
    return True


async def all_decoding(peers: list[TestPeer], min_frames: int, timeout: float) -> None:
    await asyncio.gather(*(
        peer.wait_for(lambda peer=peer: decoding_all(peer, [p for p in peers if p is not peer],
                                                     min_frames),
                      timeout, f"{min_frames} decoded frames from every other participant")
        for peer in peers))


async def rejoin(old: TestPeer, urls: list[str], deadline: float) -> TestPeer:
    """What a client does when its socket closes: join again, through the first node that
    answers (a load balancer's job in production), and publish again."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(old.close(), 2)
    attempt = 0
    while True:
        url = urls[attempt % len(urls)]
        attempt += 1
        peer = TestPeer(url, old.room, old.name, size=old.size)
        try:
            await peer.join()
            await peer.publish()
            return peer
        except (TimeoutError, ConnectionError, OSError, SignalingError) as exc:
            await peer.close()
            if time.monotonic() > deadline:
                raise AssertionError(f"{old.name} could not rejoin: {exc}") from exc
            await asyncio.sleep(0.2)


def metrics(server: ServerProcess) -> str:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


def cluster_command(redis: RedisServer, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "signaling", "cluster", "--redis-url", redis.url,
                    *args], check=True, cwd=REPO, timeout=30)


async def metric_shows(server: ServerProcess, line: str, timeout: float = 5) -> None:
    """Waits for a /metrics line (the cluster's gauges move at each 1 s heartbeat)."""
    deadline = time.monotonic() + timeout
    while line not in metrics(server):
        assert time.monotonic() < deadline, f"{server.base_url}/metrics never showed {line}"
        await asyncio.sleep(0.1)


async def test_a_room_on_node_1_is_reached_through_node_2_and_survives_node_1s_death(
        tmp_path: Path, redis_server: RedisServer) -> None:
    node1 = start_node(tmp_path, redis_server, "node1")
    node2 = start_node(tmp_path, redis_server, "node2")
    peers: list[TestPeer] = []
    try:
        alice = TestPeer(node1.base_url, ROOM, "alice", size=SIZES["alice"])
        bob = TestPeer(node1.base_url, ROOM, "bob", size=SIZES["bob"])
        carol = TestPeer(node2.base_url, ROOM, "carol", size=SIZES["carol"])  # via node 2
        peers = [alice, bob, carol]
        for peer in peers:
            joined = await peer.join()
        assert {p["name"] for p in joined["participants"]} == {"alice", "bob"}
        for peer in peers:
            await peer.publish()
        await all_decoding(peers, 10, 30)
        for receiver in peers:
            for sender in peers:
                record = receiver.video_from(sender.participant_id or "")
                assert sender is receiver or (record is not None
                                              and record.sizes == {sender.size})
        # The room, carol included, lives on node 1; node 2 only relays carol's signaling.
        assert node1.stats()["participants"] == 3
        assert node2.stats()["rooms"] == 0
        assert 'visio_cluster_relays_open{node="node2"} 1' in metrics(node2)
        await metric_shows(node1, 'visio_cluster_nodes{node="node1"} 2')

        node1.process.kill()  # kill -9: no goodbye, its registry entry and claims just expire
        killed = time.monotonic()
        node1.process.wait()
        for peer in peers:  # every socket closes: node 1's at once, carol's relay with it
            await asyncio.wait_for(peer.signaling.closed.wait(), 5)
        deadline = killed + FAILOVER_LIMIT
        peers = list(await asyncio.gather(*(rejoin(p, [node2.base_url], deadline)
                                            for p in peers)))
        rejoined = time.monotonic() - killed
        await all_decoding(peers, 5, max(0.1, deadline - time.monotonic()))
        decoding = time.monotonic() - killed
        print(f"\nfailover: rejoined {rejoined:.1f} s, decoding again {decoding:.1f} s "
              f"after kill -9")
        stats = node2.stats()
        assert stats["rooms"] == 1 and stats["participants"] == 3
        assert decoding < FAILOVER_LIMIT
        await metric_shows(node2, 'visio_cluster_nodes{node="node2"} 1')  # node 1 expired
        await metric_shows(node2, 'visio_cluster_rooms_claimed{node="node2"} 1')
    finally:
        for peer in peers:
            await peer.close()
        if node1.process.poll() is None:
            stop_server(node1)
        stop_server(node2)


def test_a_node_without_redis_at_start_refuses_to_serve(tmp_path: Path) -> None:
    """A wrong --redis-url fails at start-up, not at the first join."""
    with pytest.raises(RuntimeError, match=r"Redis at .* is unreachable"):
        start_server(tmp_path, "--redis-url", f"redis://127.0.0.1:{free_port()}/0")


async def test_a_drained_node_sends_new_rooms_to_the_other_node(
        tmp_path: Path, redis_server: RedisServer) -> None:
    node1 = start_node(tmp_path, redis_server, "node1")
    node2 = start_node(tmp_path, redis_server, "node2")
    peers: list[TestPeer] = []
    try:
        early = TestPeer(node1.base_url, "maths", "erin")
        peers.append(early)
        await early.join()  # a room node 1 hosts before the drain: it stays there
        cluster_command(redis_server, "drain", "node1")
        await metric_shows(node1, 'visio_node_draining{node="node1"} 1')
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(node1.base_url + "/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert "draining" in json.load(not_ready.value)["reason"]
        late = TestPeer(node1.base_url, "maths", "frank")
        newcomer = TestPeer(node1.base_url, "history", "dave")
        peers += [late, newcomer]
        await late.join()
        joined = await newcomer.join()
        assert joined["room"] == "history"
        assert node1.stats()["participants"] == 2  # erin and frank, in maths
        assert node2.stats()["participants"] == 1  # dave, relayed by node 1 to node 2
        assert 'visio_cluster_relays_open{node="node1"} 1' in metrics(node1)

        # A room event crosses nodes: published from a shell, delivered by node 1 to erin.
        cluster_command(redis_server, "notice", "maths", "Fin dans 5 minutes")
        await early.wait_for(lambda: any(e.get("type") == "chat" and e.get("name") == "visio"
                                         and e.get("text") == "Fin dans 5 minutes"
                                         for e in early.events), 5, "the operator's notice")
        # Migrate: node 1's rooms move; its participants reconnect (through node 1, which now
        # relays them) and the room is placed on node 2.
        cluster_command(redis_server, "drain", "node1", "--migrate")
        for peer in (early, late):
            await asyncio.wait_for(peer.signaling.closed.wait(), 5)
        deadline = time.monotonic() + 10
        moved = list(await asyncio.gather(*(rejoin(p, [node1.base_url], deadline)
                                            for p in (early, late))))
        peers += moved
        assert node2.stats()["participants"] == 3 and node1.stats()["participants"] == 0
        await metric_shows(node1, 'visio_cluster_relays_open{node="node1"} 3')
    finally:
        for peer in peers:
            await peer.close()
        stop_server(node1)
        stop_server(node2)


async def test_a_hosting_node_that_refuses_a_relayed_socket_makes_the_client_retry_later(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """Node 1 is alive but its connect rate limit refuses node 2's relay (every relayed
    socket comes from node 2's address unless node 2 is a --trusted-proxy of node 1)."""
    node1 = start_node(tmp_path, redis_server, "node1", "--rate-limit-connects", "2/min")
    node2 = start_node(tmp_path, redis_server, "node2")
    peers = [TestPeer(node1.base_url, "maths", "erin"),
             TestPeer(node2.base_url, "maths", "frank")]
    try:
        await peers[0].join()
        await peers[1].join()  # node 1's second connection this minute: accepted
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.ws_connect(
                node2.base_url.replace("http", "ws") + "/ws") as ws:
            await ws.send_json({"type": "join", "v": 1, "room": "maths", "name": "gus", "id": 1})
            frame = await ws.receive(timeout=10)  # node 1 refused node 2's relay with 429
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1013, frame
        assert time.monotonic() - started < 3  # at once: a refusing node is not a dead one
        assert node1.stats()["participants"] == 2
    finally:
        for peer in peers:
            await peer.close()
        stop_server(node1)
        stop_server(node2)


async def test_a_refused_join_places_no_room(tmp_path: Path, redis_server: RedisServer) -> None:
    node = start_node(tmp_path, redis_server, "node1", "--mode", "production",
                      "--secret-key", "test-" + "k" * 59)
    peer = TestPeer(node.base_url, "maths", "mallory")
    try:
        with pytest.raises(SignalingError, match="token_required"):
            await peer.join()
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert await redis.keys("visio:room:*") == []
            assert await redis.exists("visio:node:node1") == 1
        finally:
            await redis.aclose()
    finally:
        await peer.close()
        stop_server(node)


async def test_sigusr1_drains_a_node(tmp_path: Path, redis_server: RedisServer) -> None:
    node = start_node(tmp_path, redis_server, "node1")
    try:
        await metric_shows(node, 'visio_node_draining{node="node1"} 0')
        node.process.send_signal(signal.SIGUSR1)
        await metric_shows(node, 'visio_node_draining{node="node1"} 1')
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        try:
            assert json.loads(await redis.get("visio:node:node1") or "{}")["draining"] is True
        finally:
            await redis.aclose()
        listed = subprocess.run([sys.executable, "-m", "signaling", "cluster", "--redis-url",
                                 redis_server.url, "nodes"], check=True, cwd=REPO, timeout=30,
                                capture_output=True, text=True)
        assert json.loads(listed.stdout) == [{"node_id": "node1", "url": node.base_url,
                                              "rooms": 0, "participants": 0, "draining": True}]
    finally:
        stop_server(node)
