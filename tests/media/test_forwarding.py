"""Three real aiortc participants forward through a real ``visio serve`` over UDP on 127.0.0.1."""

from __future__ import annotations

import asyncio

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


async def test_late_joiner_decodes_first_frame_within_1_5_s(visio_server: ServerProcess) -> None:
    peers = await start_room(visio_server, "late", 2)
    late = TestPeer(visio_server.base_url, "late", "late")
    try:
        for peer in peers:
            await peer.wait_for(lambda peer=peer: decoding_all_others(
                peer, [p for p in peers if p is not peer], 5), 20, "the room to stream")
        await late.join()
        assert late.joined_at is not None
        await late.wait_for(lambda: decoding_all_others(late, peers, 1), 5,
                            "a first frame from each publisher")
        for publisher in peers:
            record = late.video_from(publisher.participant_id or "")
            assert record is not None and record.first_frame_at is not None
            delay = record.first_frame_at - late.joined_at
            assert delay < 1.5, f"first frame from {publisher.name} after {delay:.2f} s"
    finally:
        for peer in [*peers, late]:
            await peer.close()


async def test_leaver_tracks_disappear_from_the_others(visio_server: ServerProcess) -> None:
    peers = await start_room(visio_server, "leave", 3)
    stayers, leaver = peers[:2], peers[2]
    try:
        for peer in stayers:
            await peer.wait_for(lambda peer=peer: decoding_all_others(
                peer, [p for p in peers if p is not peer], 5), 20, "the room to stream")
        leaver_id = leaver.participant_id
        await leaver.leave()
        for peer in stayers:
            await peer.wait_for(lambda peer=peer: any(
                e["type"] == "participant_left" and e["participant_id"] == leaver_id
                for e in peer.events), 5, "participant_left")
            removed = {e["source_id"] for e in peer.events if e["type"] == "source_removed"}
            assert len(removed) == 2  # the leaver's audio and video
            await peer.wait_for(lambda peer=peer: all(
                (info or {}).get("participant_id") != leaver_id
                for info in peer.tracks_map.values()), 5, "an offer without the leaver")
            assert any(info is None for info in peer.tracks_map.values())  # m-lines recycled
            record = peer.video_from(leaver_id or "")
            assert record is not None
            frozen_at = record.frames
            await asyncio.sleep(1.0)
            assert record.frames == frozen_at, "frames still arrive from a participant who left"
        stats = visio_server.stats()
        assert stats["participants"] == 2 and stats["producers"] == 4
        # the stayers still receive each other
        a, b = stayers
        record = a.video_from(b.participant_id or "")
        assert record is not None
        before = record.frames
        await a.wait_for(lambda: record.frames > before + 5, 5, "frames after the leave")
    finally:
        for peer in peers:
            await peer.close()


async def test_nack_rtx_keeps_frames_decodable_under_5_percent_loss(
        visio_server: ServerProcess) -> None:
    publisher = TestPeer(visio_server.base_url, "lossy", "publisher", size=(320, 240))
    subscriber = TestPeer(visio_server.base_url, "lossy", "subscriber", receive_loss=0.05,
                          seed=7)
    try:
        await publisher.join()
        await subscriber.join()
        await publisher.publish()
        await subscriber.wait_for(lambda: decoding_all_others(subscriber, [publisher], 10), 20,
                                  "video under loss")
        record = subscriber.video_from(publisher.participant_id or "")
        assert record is not None and publisher.video is not None
        sent_before, decoded_before = publisher.video.frames_sent, record.frames
        await asyncio.sleep(8.0)
        sent = publisher.video.frames_sent - sent_before
        decoded = record.frames - decoded_before
        assert subscriber.dropped > 20, "the loss injection did not drop anything"
        assert visio_server.stats()["counters"]["retransmissions"] > 0
        paused = [e for e in subscriber.events if e["type"] == "source_paused"]
        counters = visio_server.stats()["counters"]
        print(f"decoded {decoded}/{sent} frames, dropped {subscriber.dropped} packets, "
              f"PLIs from the subscriber {counters['plis_received']}")
        assert decoded >= 0.95 * sent, (
            f"decoded {decoded} of {sent} frames under 5 % loss; pauses: {paused}")
    finally:
        await publisher.close()
        await subscriber.close()


async def test_server_never_decodes(visio_server: ServerProcess) -> None:
    baseline = visio_server.os_thread_count()
    peers = await start_room(visio_server, "nodecode", 3)
    try:
        for peer in peers:
            await peer.wait_for(lambda peer=peer: decoding_all_others(
                peer, [p for p in peers if p is not peer], 10), 20, "the room to stream")
        stats = visio_server.stats()
        assert stats["producers"] == 6
        assert stats["counters"]["rtp_packets_out"] > 0
        # aiortc starts one decoder thread per receiver; the SFU stops each before any frame.
        assert stats["decoder_threads"] == 0
        assert visio_server.os_thread_count() <= baseline + 1, (
            f"server threads grew from {baseline} to {visio_server.os_thread_count()}")
    finally:
        for peer in peers:
            await peer.close()
