"""``visio serve --workers 2``: rooms in SFU worker processes, relayed between them, and
surviving a killed worker. Real aiortc peers over UDP on 127.0.0.1, frames decoded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.media.peer import Received, TestPeer

pytestmark = pytest.mark.media


def frames_from(receiver: TestPeer, sender: TestPeer) -> int:
    return (receiver.video_from(sender.participant_id or "") or Received("")).frames


def workers(server: ServerProcess) -> list[dict[str, Any]]:
    stats: list[dict[str, Any]] = server.stats()["workers"]
    return stats


def alice_and_bob(base_url: str, room: str) -> list[TestPeer]:
    return [TestPeer(base_url, room, name, size=size)
            for name, size in (("alice", (320, 240)), ("bob", (256, 192)))]


async def join_and_publish(peers: list[TestPeer]) -> None:
    """Everyone joins before anyone publishes, so each worker gets one of them."""
    for peer in peers:
        await peer.join()
    for peer in peers:
        await peer.publish()


async def see_each_other(peers: list[TestPeer], timeout: float, again: str = "") -> None:
    a, b = peers
    await a.wait_for(lambda: frames_from(a, b) > 5, timeout, f"video from bob{again}")
    await b.wait_for(lambda: frames_from(b, a) > 5, timeout, f"video from alice{again}")


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_participant_on_one_worker_decodes_a_publisher_on_the_other(
        two_workers: ServerProcess) -> None:
    alice = TestPeer(two_workers.base_url, "spread", "alice", size=(320, 240))
    bob = TestPeer(two_workers.base_url, "spread", "bob", size=(256, 192))
    carol = TestPeer(two_workers.base_url, "spread", "carol")
    try:
        for peer in (alice, bob):
            await peer.join()
        for peer in (alice, bob):
            await peer.publish()
        await alice.wait_for(lambda: frames_from(alice, bob) > 10, 20, "video from bob")
        await bob.wait_for(lambda: frames_from(bob, alice) > 10, 20, "video from alice")
        served = workers(two_workers)
        # One participant per worker: each one's video crossed the pipe to reach the other.
        assert [w["participants"] for w in served] == [1, 1], served
        assert all(w["alive"] and w["pipes"] == 1 for w in served), served
        record = alice.video_from(bob.participant_id or "")
        assert record is not None and record.sizes == {bob.size}
        # A late joiner lands on one of the two workers: the other's publisher must send it
        # a keyframe, asked for across the pipe (PLI), for its first frame.
        await carol.join()
        await carol.wait_for(lambda: frames_from(carol, alice) > 0 and frames_from(carol, bob) > 0,
                             10, "a first frame from alice and from bob")
        stats = two_workers.stats()
        assert stats["participants"] == 3 and stats["producers"] == 4
        assert stats["counters"]["consumer_errors"] == 0
        assert stats["counters"]["ingress_errors"] == 0
    finally:
        for peer in (alice, bob, carol):
            await peer.close()


async def rejoin(base_url: str, peer: TestPeer) -> TestPeer:
    """What the web client does when its socket closes: join again and republish."""
    await peer.close()
    fresh = TestPeer(base_url, peer.room, peer.name, size=peer.size)
    await fresh.join()
    await fresh.publish()
    return fresh


async def test_killed_worker_participants_rejoin_and_decode_within_10_s(
        two_workers: ServerProcess) -> None:
    peers = alice_and_bob(two_workers.base_url, "sturdy")
    try:
        await join_and_publish(peers)
        await see_each_other(peers, 20)
        before = workers(two_workers)
        victim = before[0]
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        # The participant it served is told (``left``) and its socket closes.
        await wait_until(lambda: any(p.signaling.closed.is_set() for p in peers), 5,
                         "the killed worker's participant to be disconnected")
        victims = [p for p in peers if p.signaling.closed.is_set()]
        assert len(victims) == 1
        left = [e for e in victims[0].events if e["type"] == "left"]
        assert left and left[0]["reason"] == "worker_failed"
        with urllib.request.urlopen(two_workers.base_url + "/healthz", timeout=5) as response:
            assert response.status == 200
        index = peers.index(victims[0])
        peers[index] = await rejoin(two_workers.base_url, victims[0])
        await see_each_other(peers, 10 - (time.monotonic() - killed_at), " again")
        assert time.monotonic() - killed_at < 10
        await wait_until(lambda: all(w["alive"] for w in workers(two_workers)), 20,
                         "the killed worker to be restarted")
        after = workers(two_workers)
        assert after[0]["restarts"] == 1 and after[0]["pid"] != victim["pid"]
        assert two_workers.process.poll() is None
    finally:
        for peer in peers:
            await peer.close()


async def test_new_rooms_go_to_the_least_loaded_worker_and_metrics_name_workers(
        two_workers: ServerProcess) -> None:
    peers = [TestPeer(two_workers.base_url, room, name)
             for room, name in (("first", "alice"), ("second", "bob"))]
    try:
        for peer in peers:
            await peer.join()
        served = workers(two_workers)
        assert sorted(w["participants"] for w in served) == [1, 1], served
        assert all(w["pipes"] == 0 for w in served)  # two rooms: nothing to relay
        with urllib.request.urlopen(two_workers.base_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        for index in (0, 1):
            assert f'visio_worker_up{{worker="{index}"}} 1' in text
            assert f'visio_worker_participants{{worker="{index}"}} 1' in text
        assert 'visio_worker_forwarded_packets_per_second{worker="1"}' in text
        assert "visio_participants 2" in text
    finally:
        for peer in peers:
            await peer.close()


async def test_concurrent_joins_and_leaves_keep_the_shards_consistent(
        two_workers: ServerProcess) -> None:
    """Six participants join one room at once and leave in another order: every worker
    ends with no participant, no pipe, and the others saw each departure."""
    peers = [TestPeer(two_workers.base_url, "churn", f"p{i}") for i in range(6)]
    try:
        await asyncio.gather(*(peer.join() for peer in peers))
        served = workers(two_workers)
        assert sorted(w["participants"] for w in served) == [3, 3], served
        assert all(w["pipes"] == 1 for w in served), served
        survivor = peers[0]
        for peer in peers[:0:-1]:
            await peer.leave()
        await wait_until(lambda: sum(e["type"] == "participant_left"
                                     for e in survivor.events) == 5, 10,
                         "five participant_left events at the survivor")
        await survivor.leave()
        await wait_until(lambda: all(w["participants"] == 0 and w["pipes"] == 0
                                     for w in workers(two_workers)), 10, "empty workers")
        assert two_workers.stats()["rooms"] == 0
        assert "Traceback" not in two_workers.log()
    finally:
        for peer in peers:
            await peer.close()


async def test_drained_worker_moves_its_participants_to_the_other(
        two_workers: ServerProcess) -> None:
    """``visio workers drain 0 --migrate``: worker 0's participant is told to rejoin, lands
    on worker 1 (worker 0 takes nobody new), and decodes the other participant again."""
    peers = alice_and_bob(two_workers.base_url, "moving")
    try:
        await join_and_publish(peers)
        await see_each_other(peers, 20)
        a = peers[0]
        assert [w["participants"] for w in workers(two_workers)] == [1, 1]
        drained = subprocess.run(
            [sys.executable, "-m", "signaling", "workers", "--url", two_workers.base_url,
             "drain", "0", "--migrate"], capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(drained.stdout) == {"worker": 0, "draining": True,
                                              "told_to_rejoin": 1}
        await wait_until(lambda: a.signaling.closed.is_set(), 5, "alice to be disconnected")
        assert [e["reason"] for e in a.events if e["type"] == "left"] == ["worker_drained"]
        peers[0] = await rejoin(two_workers.base_url, a)
        await see_each_other(peers, 10, " again")
        served = workers(two_workers)
        assert [w["participants"] for w in served] == [0, 2], served
        assert [w["draining"] for w in served] == [True, False]
    finally:
        for peer in peers:
            await peer.close()
