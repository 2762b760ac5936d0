"""Subscribers that stop reading must not make the SFU hold their media in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, start_server, stop_server
from tests.media.peer import Received, TestPeer

pytestmark = pytest.mark.media

STALLED = 8
WINDOW = 30.0  # seconds the stalled subscribers are fed while the SFU's memory is watched
GROWTH_LIMIT = 8 * 1024 * 1024  # bytes of RSS growth tolerated (allocator noise, caches)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stop_reading(peer: TestPeer) -> None:
    """The subscriber's process stops reading its media socket (a frozen tablet)."""
    assert peer.subscribe_pc is not None
    dtls = peer.subscribe_pc.getTransceivers()[0].receiver.transport
    for protocol in dtls.transport._connection._protocols:
        transport: Any = protocol.transport
        transport.pause_reading()


def frames_from(peer: TestPeer, publisher: TestPeer) -> int:
    return (peer.video_from(publisher.participant_id or "") or Received("")).frames


async def test_subscribers_that_stop_reading_do_not_grow_the_sfus_memory(tmp_path: Path) -> None:
    server: ServerProcess = start_server(tmp_path, "--workers", "0")
    url = server.base_url
    teacher = TestPeer(url, "overload", "teacher", size=(640, 480), fps=30)
    watcher = TestPeer(url, "overload", "watcher")
    stalled = [TestPeer(url, "overload", f"frozen-{i}") for i in range(STALLED)]
    peers = [teacher, watcher, *stalled]
    try:
        for peer in peers:
            await peer.join()
        await teacher.publish(audio=False)
        for peer in [watcher, *stalled]:
            await peer.wait_for(lambda peer=peer: frames_from(peer, teacher) > 3, 30,
                                "video from the teacher")
        for peer in stalled:
            stop_reading(peer)
        await asyncio.sleep(8)  # the packet histories (1,024 packets each) fill to their bounds
        rss_before = rss_bytes(server.pid)
        out_before = server.stats()["counters"]["rtp_bytes_out"]
        watched_before = frames_from(watcher, teacher)
        await asyncio.sleep(WINDOW)
        growth = rss_bytes(server.pid) - rss_before
        sent = server.stats()["counters"]["rtp_bytes_out"] - out_before
        to_stalled = sent * STALLED // (STALLED + 1)
        # What a per-subscriber queue would have kept: the test is only meaningful if that
        # is well above what it tolerates.
        assert to_stalled > 2 * GROWTH_LIMIT, f"only {to_stalled} bytes went to stalled peers"
        assert growth < GROWTH_LIMIT, (
            f"RSS grew {growth / 2**20:.1f} MiB while {to_stalled / 2**20:.1f} MiB went to "
            f"{STALLED} subscribers that read nothing")
        assert frames_from(watcher, teacher) > watched_before + WINDOW * 10, (
            "the subscriber that reads stopped getting video")
        assert "Traceback" not in server.log()
    finally:
        for peer in peers:
            await peer.close()
        stop_server(server)


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


async def test_participants_who_leave_give_back_every_socket(tmp_path: Path) -> None:
    """The send path holds its own duplicate of each subscriber's ICE socket: leaving
    must close it, or a day of meetings would exhaust the server's descriptors."""
    server: ServerProcess = start_server(tmp_path, "--workers", "0")
    url = server.base_url
    teacher = TestPeer(url, "sockets", "teacher")
    try:
        await teacher.join()
        await teacher.publish(audio=False)
        await asyncio.sleep(1)
        baseline = open_files(server.pid)
        for round_ in range(2):
            pupils = [TestPeer(url, "sockets", f"pupil-{round_}-{i}") for i in range(4)]
            for pupil in pupils:
                await pupil.join()
            for pupil in pupils:
                await pupil.wait_for(lambda pupil=pupil: frames_from(pupil, teacher) > 2, 30,
                                     "video from the teacher")
            assert open_files(server.pid) > baseline  # each pupil's connection has sockets
            for pupil in pupils:
                await pupil.leave()
        deadline = asyncio.get_running_loop().time() + 10
        while open_files(server.pid) > baseline and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        assert open_files(server.pid) <= baseline
    finally:
        await teacher.close()
        stop_server(server)
