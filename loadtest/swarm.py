"""The asyncio side of the locust swarm (no gevent, no locust in this module).

A locust process runs on gevent; aiortc runs on asyncio. Each locust
process hosts its participants on *one* uvloop event loop in *one* real OS
thread (``AsyncioHost``). The two sides touch only through:

* ``loop.call_soon_threadsafe`` (gevent → asyncio), a C call with uvloop;
* a ``collections.deque`` of plain tuples (asyncio → gevent), appended by
  the loop thread and drained by one greenlet; ``deque.append`` and
  ``popleft`` are atomic in CPython, so neither side takes a lock that gevent
  patched.

Nothing here ever calls gevent; ``loadtest/locustfile.py`` does the locust
part. See docs/loadtest.md.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop

from loadtest.participant import LightParticipant, ParticipantConfig

# (request_type, name, value, response_length, error or None): one locust request event.
Sample = tuple[str, str, float, int, str | None]
REPORT_INTERVAL = 2.0  # s between per-track samples
POLL = 0.2  # s between milestone checks


@dataclass
class Scenario:
    """The knobs of a swarm (locust custom arguments, see locustfile.py)."""

    base_url: str
    rooms: int = 2
    participants_per_room: int = 4
    publishers_per_room: int = 2
    video: bool = True
    audio: bool = True
    video_preset: str = "180p"
    room_prefix: str = "lt"
    workers: int = 1  # locust worker processes sharing the numbering

    def assign(self, index: int) -> tuple[str, int, bool]:
        """Participant ``index`` (0-based, global): room name, seat in it, publishes?"""
        room = index % self.rooms
        seat = index // self.rooms
        return f"{self.room_prefix}-{room}", seat, seat < self.publishers_per_room

    def expects_media(self, publishes: bool) -> bool:
        others = min(self.publishers_per_room, self.participants_per_room) - (1 if publishes
                                                                               else 0)
        return others > 0 and (self.video or self.audio)


@dataclass
class Driven:
    """One participant run by the host, with what was already reported of it."""

    participant: LightParticipant
    expects_media: bool
    stop: asyncio.Event
    reported: set[str] = field(default_factory=set)
    previous: dict[int, dict[str, Any]] = field(default_factory=dict)
    previous_at: float = 0.0
    previous_paused: int = 0
    started_at: float = 0.0
    deadline: float = 10.0  # s: a milestone still missing this long after the start is an error
    done: bool = False
    task: asyncio.Task[None] | None = None


def stream_samples(previous: dict[str, Any] | None, current: dict[str, Any],
                   seconds: float) -> list[Sample]:
    """Samples for one track over one interval (cumulative counters → rates)."""
    kind = current["kind"]
    before = previous or {"octets": 0, "expected": 0, "lost": 0, "freezes": 0,
                          "freeze_seconds": 0.0}
    samples: list[Sample] = []
    if seconds > 0:
        kbps = (current["octets"] - before["octets"]) * 8 / seconds / 1000
        samples.append((kind, "bitrate_kbps", kbps, current["octets"] - before["octets"], None))
    expected = current["expected"] - before["expected"]
    if expected > 0:
        lost = max(0, current["lost"] - before["lost"])
        samples.append((kind, "loss_pct", 100.0 * lost / expected, expected, None))
    samples.append((kind, "jitter_ms", current["jitter_ms"], 0, None))
    if kind == "video":
        freezes = current["freezes"] - before["freezes"]
        if freezes > 0:
            duration = (current["freeze_seconds"] - before["freeze_seconds"]) / freezes
            samples.extend([("video", "freeze_ms", 1000 * duration, 0, None)] * freezes)
        if current["resolution"] is not None:
            width, height = current["resolution"]
            samples.append(("video", f"layer {width}x{height}", 0.0, 0, None))
    return samples


class AsyncioHost:
    """One uvloop event loop in one OS thread, hosting a process's participants."""

    def __init__(self, start_thread: Callable[..., Any] = _thread.start_new_thread) -> None:
        self._start_thread = start_thread
        self.loop: asyncio.AbstractEventLoop | None = None
        self.samples: collections.deque[Sample] = collections.deque()
        self.driven: list[Driven] = []
        self.running = 0  # participants whose driver has not finished
        self.finished = False

    def start(self) -> None:
        self._start_thread(self._run, ())

    def _run(self) -> None:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_forever()
        finally:
            loop.close()
            self.finished = True

    # ------------------------------------------------------------ called from gevent

    def add(self, config: ParticipantConfig, expects_media: bool,
            deadline: float = 10.0) -> Driven | None:
        """Start a participant on the loop; returns its handle (None if the loop is not up)."""
        loop = self.loop
        if loop is None:
            return None
        handle = Driven(LightParticipant(config), expects_media, asyncio.Event(),
                        deadline=deadline)
        self.running += 1  # only the gevent side writes this before the driver runs
        loop.call_soon_threadsafe(self._spawn, handle)
        return handle

    def remove(self, handle: Driven) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(handle.stop.set)

    def remove_all(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            for handle in list(self.driven):
                loop.call_soon_threadsafe(handle.stop.set)

    def shutdown(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)

    def drain(self, limit: int = 100_000) -> list[Sample]:
        out: list[Sample] = []
        while self.samples and len(out) < limit:
            out.append(self.samples.popleft())
        return out

    # ------------------------------------------------------------ on the loop thread

    def _spawn(self, handle: Driven) -> None:
        self.driven.append(handle)
        handle.task = asyncio.ensure_future(self._drive(handle))

    async def _drive(self, handle: Driven) -> None:
        participant = handle.participant
        emit = self.samples.append
        handle.started_at = time.monotonic()
        try:
            try:
                await asyncio.wait_for(participant.start(), participant.config.join_timeout)
            except Exception as exc:
                emit(("join", "join", 0.0, 0, f"{type(exc).__name__}: {exc}"))
                return
            handle.previous_at = time.monotonic()
            next_report = handle.previous_at + REPORT_INTERVAL
            while not handle.stop.is_set():
                self._milestones(handle)
                if time.monotonic() >= next_report:
                    self._report(handle)
                    next_report += REPORT_INTERVAL
                if participant.error is not None:
                    emit(("participant", "error", 0.0, 0, participant.error))
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(handle.stop.wait(), POLL)
            self._milestones(handle)
            self._report(handle)
            self._missing_milestones(handle)
        finally:
            try:
                await participant.stop()
            finally:
                handle.done = True
                self.running -= 1

    def _milestones(self, handle: Driven) -> None:
        for name, seconds in handle.participant.milestones.items():
            if name not in handle.reported:
                handle.reported.add(name)
                self.samples.append(("join", name, 1000 * seconds, 0, None))

    def _missing_milestones(self, handle: Driven) -> None:
        participant = handle.participant
        wanted = ["ice_connected"]
        if handle.expects_media:
            wanted.append("first_rtp")
            if participant.config.video and any(s.kind == "video"
                                                for s in participant.streams.values()):
                wanted.append("first_keyframe")
        if time.monotonic() - handle.started_at < handle.deadline:
            return  # stopped before it had its chance
        for name in wanted:
            if name not in handle.reported:
                self.samples.append(("join", name, 0.0, 0, f"{name} not reached"))

    def _report(self, handle: Driven) -> None:
        now = time.monotonic()
        seconds = now - handle.previous_at
        report = handle.participant.report()
        for stream in report.streams:
            previous = handle.previous.get(stream["ssrc"])
            self.samples.extend(stream_samples(previous, stream, seconds))
            handle.previous[stream["ssrc"]] = stream
        for _ in range(report.paused - handle.previous_paused):
            self.samples.append(("video", "source_paused", 0.0, 0, None))
        handle.previous_paused = report.paused
        handle.previous_at = now


@dataclass
class Thresholds:
    join_p95_ms: float = 5000.0
    loss_pct: float = 2.0
    freezes_per_minute: float = 2.0  # per received video track
    errors: int = 0


def check_thresholds(stats: Callable[[str, str], Any], thresholds: Thresholds,
                     video: bool, errors: int) -> list[str]:
    """What broke, from locust-like stats entries (``stats(name, request_type)``)."""
    broken = []
    milestone = "first_keyframe" if video else "first_rtp"
    join = stats(milestone, "join")
    if join.num_requests == 0:
        broken.append(f"no participant reached {milestone}")
    else:
        p95 = join.get_response_time_percentile(0.95)
        if p95 > thresholds.join_p95_ms:
            broken.append(f"p95 join time to {milestone} {p95:.0f} ms > "
                          f"{thresholds.join_p95_ms:g} ms")
    for kind in ("video", "audio"):
        loss = stats("loss_pct", kind)
        if loss.num_requests and loss.avg_response_time > thresholds.loss_pct:
            broken.append(f"{kind} loss {loss.avg_response_time:.2f} % > "
                          f"{thresholds.loss_pct:g} %")
    video_minutes = stats("bitrate_kbps", "video").num_requests * REPORT_INTERVAL / 60
    freezes = stats("freeze_ms", "video").num_requests
    if video_minutes > 0 and freezes / video_minutes > thresholds.freezes_per_minute:
        broken.append(f"{freezes / video_minutes:.2f} freezes per video-minute > "
                      f"{thresholds.freezes_per_minute:g}")
    if errors > thresholds.errors:
        broken.append(f"{errors} errors > {thresholds.errors}")
    return broken


def participant_config(scenario: Scenario, index: int) -> tuple[ParticipantConfig, bool]:
    room, _seat, publishes = scenario.assign(index)
    config = ParticipantConfig(scenario.base_url, room, f"lt-{index}", publish=publishes,
                               video=scenario.video, audio=scenario.audio,
                               video_preset=scenario.video_preset)
    return config, scenario.expects_media(publishes)
