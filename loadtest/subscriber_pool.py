"""Listening light participants on their own event loop thread, with that thread's CPU time.

The forwarding benchmark publishes from its main thread (aiortc's live VP8
encoder) and must still say what the *light client* costs per received
packet. Hosting the subscribers on a second uvloop loop in a thread of their
own makes their cost that thread's CPU time (``time.thread_time``: user +
system of this thread only), apart from the encoder's; the same split as a
locust worker, which hosts its participants on one asyncio thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop

from loadtest.participant import LightParticipant, ParticipantConfig

T = TypeVar("T")
STOP_TIMEOUT = 15.0


@dataclass
class PoolSample:
    """The pool's thread CPU time and every subscriber's received packets, at one moment."""

    at: float
    cpu: float
    packets: list[int]
    lost: int  # sequence gaps the subscribers saw (RTX excluded), all streams
    expected: int


class SubscriberPool:
    """N listening ``LightParticipant``s on one uvloop loop in a dedicated thread."""

    def __init__(self, base_url: str, room: str, count: int, *, audio: bool,
                 transport_cc: bool) -> None:
        self.configs = [ParticipantConfig(base_url, room, f"sub{i:02d}", publish=False,
                                          audio=audio, transport_cc=transport_cc)
                        for i in range(count)]
        self.participants: list[LightParticipant] = []
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="subscribers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the pool's loop and wait for it from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine,
                                                                          self._loop))

    async def start(self) -> None:
        await self.call(self._start())

    async def _start(self) -> None:
        for config in self.configs:
            participant = LightParticipant(config)
            self.participants.append(participant)
            await participant.start()

    async def waiting(self, audio: bool) -> tuple[int, list[str]]:
        """How many subscribers lack media (video, and audio if published), and errors."""
        return await self.call(self._waiting(audio))

    async def _waiting(self, audio: bool) -> tuple[int, list[str]]:
        waiting = 0
        for participant in self.participants:
            kinds = {s.kind for s in participant.streams.values() if s.packets and not s.rtx}
            if "video" not in kinds or (audio and "audio" not in kinds):
                waiting += 1
        errors = [f"{p.config.name}: {p.error}" for p in self.participants if p.error]
        return waiting, errors

    async def sample(self) -> PoolSample:
        return await self.call(self._sample())

    async def _sample(self) -> PoolSample:
        lost = expected = 0
        for participant in self.participants:
            for stream in participant.streams.values():
                lost += stream.lost
                expected += stream.expected
        return PoolSample(time.monotonic(), time.thread_time(),
                          [p.packets for p in self.participants], lost, expected)

    async def close(self) -> None:
        """Stop every subscriber, then the loop and its thread."""
        if not self._loop.is_closed() and self._loop.is_running():
            await self.call(self._stop_all())
            self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join,
                                                         STOP_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    async def _stop_all(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.participants), return_exceptions=True)
