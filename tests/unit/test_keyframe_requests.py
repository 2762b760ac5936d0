"""sfu.keyframe_requests: at most one PLI per hold-off window, bursts folded into one."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sfu.keyframe_requests import KeyframeRequester

HOLD_OFF = 10.0  # fake seconds; real waits are kept tiny by placing "now" near the window's end
REAL_WAIT = 0.02  # real seconds left in the window when a request is deferred


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


def make(clock: FakeClock) -> tuple[KeyframeRequester, Recorder]:
    recorder = Recorder()
    return KeyframeRequester(recorder, hold_off=HOLD_OFF, clock=clock), recorder


async def settle() -> None:
    """Let already-scheduled tasks run (no timers)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_first_request_goes_out_at_once() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    assert requester.requests_sent == 1
    assert requester.requests_folded == 0
    await settle()
    assert recorder.calls == 1


async def test_default_clock() -> None:
    recorder = Recorder()
    requester = KeyframeRequester(recorder)
    requester.request()
    requester.request()
    await settle()
    assert (requester.requests_sent, requester.requests_folded, recorder.calls) == (1, 1, 1)
    requester.close()


async def test_burst_is_folded_into_one_deferred_request() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    for _ in range(5):
        requester.request()
    await settle()
    assert requester.requests_sent == 1
    assert requester.requests_folded == 5
    assert recorder.calls == 1
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert requester.requests_sent == 2
    assert recorder.calls == 2
    assert requester.requests_folded == 5


async def test_deferred_request_starts_a_new_window() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    requester.request()
    clock.now += REAL_WAIT  # the fake clock says the window is over when the timer fires
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert recorder.calls == 2
    clock.now += HOLD_OFF / 2  # inside the window opened by the deferred request
    requester.request()
    await settle()
    assert requester.requests_sent == 2
    assert requester.requests_folded == 2
    requester.close()


async def test_request_after_a_fired_deferred_request_goes_out_at_once() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    requester.request()
    clock.now += REAL_WAIT
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert requester.requests_sent == 2
    clock.now += HOLD_OFF  # the window opened by the deferred request is over
    requester.request()
    assert requester.requests_sent == 3
    assert requester.requests_folded == 1
    await settle()
    assert recorder.calls == 3


async def test_keyframe_received_cancels_the_deferred_request() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    requester.request()
    requester.request()
    requester.keyframe_received()
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert requester.requests_sent == 1
    assert recorder.calls == 1


async def test_request_after_cancellation_is_deferred_again() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    requester.request()
    requester.keyframe_received()
    requester.request()  # still inside the window opened by the first request
    assert requester.requests_sent == 1
    assert requester.requests_folded == 2
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert recorder.calls == 2


async def test_keyframe_received_without_pending_request_is_harmless() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.keyframe_received()
    requester.request()
    await settle()
    assert recorder.calls == 1


async def test_request_after_the_window_goes_out_at_once() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF  # exactly at the end of the window
    requester.request()
    clock.now += HOLD_OFF + 5
    requester.request()
    assert requester.requests_sent == 3
    assert requester.requests_folded == 0
    await settle()
    assert recorder.calls == 3


async def test_close_cancels_the_deferred_request() -> None:
    clock = FakeClock()
    requester, recorder = make(clock)
    requester.request()
    clock.now += HOLD_OFF - REAL_WAIT
    requester.request()
    requester.close()
    await asyncio.sleep(REAL_WAIT * 3)
    await settle()
    assert recorder.calls == 1


async def test_failed_send_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise ConnectionError("transport closed")

    requester = KeyframeRequester(failing, hold_off=HOLD_OFF, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="sfu.keyframe_requests"):
        requester.request()
        await settle()
    assert requester.requests_sent == 1
    assert any("keyframe request failed" in r.getMessage() and "transport closed" in r.getMessage()
               for r in caplog.records)
