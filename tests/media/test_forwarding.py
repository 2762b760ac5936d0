"""Three real aiortc participants forward through a real ``visio serve`` over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import ServerProcess
from tests.media.peer import TestPeer

pytestmark = pytest.mark.media

SIZES = [(320, 240), (256, 192), (352, 288)]


async def start_room(server: ServerProcess, room: str, count: int) -> list[TestPeer]:
    peers = [TestPeer(server.base_url, room, f"peer{i}", size=SIZES[i % len(SIZES)])
             for i in range(count)]
    for peer in peers:
        await peer.join()
    for peer in peers:
        await peer.publish()
    return peers


def decoding_all_others(peer: TestPeer, others: list[TestPeer], min_frames: int) -> bool:
    for other in others:
        record = peer.video_from(other.participant_id or "")
        if record is None or record.frames < min_frames:
            return False
    return True


async def test_three_participants_decode_each_other_at_published_resolution(
        visio_server: ServerProcess) -> None:
    peers = await start_room(visio_server, "trio", 3)
    try:
        for peer in peers:
            others = [p for p in peers if p is not peer]
            await peer.wait_for(lambda peer=peer, others=others: decoding_all_others(
                peer, others, 10), 20, "10 decoded frames from each other participant")
        for peer in peers:
            for other in peers:
                if other is peer:
                    continue
                record = peer.video_from(other.participant_id or "")
                assert record is not None
                assert record.sizes == {other.size}, (peer.name, other.name, record.sizes)
        stats = visio_server.stats()
        assert stats["participants"] == 3
        assert stats["producers"] == 6
        assert stats["counters"]["ingress_errors"] == 0
        assert stats["counters"]["consumer_errors"] == 0
    finally:
        for peer in peers:
            await peer.close()
