"""The light participant against a real server: milestones, counts, no decoding."""

from __future__ import annotations

import asyncio

import pytest

from loadtest.media_library import ReplayTrack, vp8_clip
from loadtest.participant import MILESTONES, LightParticipant, ParticipantConfig
from tests.conftest import ServerProcess

pytestmark = pytest.mark.media


async def test_replay_track_loops_and_jumps_to_keyframes() -> None:
    clip = vp8_clip(320, 180, 250_000, fps=30, seconds=4.0)
    assert clip.keyframes[0] == 0 and len(clip.keyframes) >= 2
    assert 150_000 < clip.bitrate < 400_000
    track = ReplayTrack("video", clip)
    track._period = 0.0  # no pacing in this test
    first = await track.recv()
    assert bytes(first) == clip.frames[0] and first.pts == 0
    track.request_keyframe()
    jumped = await track.recv()
    assert bytes(jumped) == clip.frames[clip.keyframes[1]]
    assert jumped.pts == clip.frame_ticks  # timestamps keep counting


async def test_light_participants_exchange_media(visio_server: ServerProcess) -> None:
    def config(name: str, publish: bool) -> ParticipantConfig:
        return ParticipantConfig(visio_server.base_url, "light", name, publish=publish,
                                 video_preset="180p")

    publishers = [LightParticipant(config(f"pub{i}", True)) for i in range(2)]
    listener = LightParticipant(config("listener", False))
    everyone = [*publishers, listener]
    try:
        for participant in everyone:
            await participant.start()
        await asyncio.sleep(6)
        report = listener.report()
        direct, total = listener.direct_packets, listener.packets
        readers = len(listener._readers)  # the selected pair's socket, taken over
    finally:
        await asyncio.gather(*(p.stop() for p in everyone))
    assert report.error is None
    # After the handshake the listener reads SRTP straight off its socket.
    assert direct > 0.9 * total, (direct, total)
    assert readers == 1
    assert set(report.milestones) == set(MILESTONES)
    times = [report.milestones[m] for m in MILESTONES]
    assert times == sorted(times), report.milestones
    assert report.milestones["first_keyframe"] < 5
    video = [s for s in report.streams if s["kind"] == "video"]
    audio = [s for s in report.streams if s["kind"] == "audio"]
    assert len(video) == 2 and len(audio) == 2
    for stream in video:
        assert stream["resolution"] == (320, 180)
        assert stream["frames"] > 60  # 30 fps for several seconds
        assert stream["lost"] <= stream["expected"] * 0.02
        assert 0 < stream["jitter_ms"] < 50
    for stream in audio:
        assert stream["packets"] > 150  # 50 packets/s
    assert listener._counter.sender_reports > 0  # SRTCP read on the direct path
    stats = visio_server.stats()
    assert stats["counters"]["rtp_packets_out"] > 0
    assert stats["counters"]["rtcp_malformed"] == 0  # our RRs and feedback parse
