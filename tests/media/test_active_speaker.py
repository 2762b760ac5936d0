"""Two aiortc publishers take turns speaking; the room names the dominant speaker."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

from tests.conftest import ServerProcess
from tests.media.peer import TestPeer

pytestmark = pytest.mark.media

RATE = 48000
SAMPLES = 960  # 20 ms


class ScheduledVoice(AudioStreamTrack):
    """A 440 Hz tone while ``speaking(now)`` is true, silence otherwise."""

    def __init__(self, speaking: Callable[[float], bool]) -> None:
        super().__init__()
        self._speaking = speaking
        self._sent = 0
        self._start: float | None = None
        tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SAMPLES) / RATE)
        self._tone = (tone * 32767).astype(np.int16).reshape(1, -1)
        self._silence = np.zeros((1, SAMPLES), dtype=np.int16)

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._sent * SAMPLES / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = self._tone if self._speaking(time.monotonic()) else self._silence
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent * SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += 1
        return frame


def speaker_events(peer: TestPeer) -> list[tuple[float, str]]:
    return [(e["_at"], e["participant_id"]) for e in peer.events
            if e["type"] == "active_speaker"]


async def test_dominant_speaker_follows_the_voice_and_ignores_a_short_burst(
        visio_server: ServerProcess) -> None:
    t0 = time.monotonic() + 3.0  # the schedule starts once both are publishing

    def alice_speaks(now: float) -> bool:
        phase = now - t0
        return phase < 4.0 or 8.0 <= phase < 8.2  # talks, then one 200 ms burst

    def bob_speaks(now: float) -> bool:
        return now - t0 >= 4.0

    alice = TestPeer(visio_server.base_url, "speakers", "alice")
    bob = TestPeer(visio_server.base_url, "speakers", "bob")
    try:
        await alice.join()
        await bob.join()
        await alice.publish(video=False, audio_track=ScheduledVoice(alice_speaks))
        await bob.publish(video=False, audio_track=ScheduledVoice(bob_speaks))
        await asyncio.sleep(max(0.0, t0 + 10.0 - time.monotonic()))
        events = speaker_events(alice)
        assert events, "no active_speaker event at all"
        to_alice = [at for at, who in events if who == alice.participant_id]
        to_bob = [at for at, who in events if who == bob.participant_id]
        assert to_alice and to_alice[0] < t0 + 1.5
        assert to_bob, f"bob never became the speaker: {events}"
        assert t0 + 4.0 <= to_bob[0] <= t0 + 4.0 + 1.5, to_bob[0] - t0
        # Alice's 200 ms burst at 8 s must not take the stage back from Bob.
        assert not [at for at in to_alice if at > t0 + 4.0], events
    finally:
        await alice.close()
        await bob.close()
