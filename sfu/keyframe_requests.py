"""Throttled keyframe requests towards a publisher.

A new subscriber must get a keyframe fast, but fifty subscribers joining (or
losing packets) together must not make a tablet encode fifty keyframes a
second. The first request goes out at once; requests inside the hold-off
window are folded into one sent when the window ends, unless a keyframe
arrives first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

DEFAULT_HOLD_OFF = 0.3  # seconds between two PLIs for one stream


class KeyframeRequester:
    """Sends at most one keyframe request per hold-off window for one publisher stream."""

    def __init__(
        self,
        send_request: Callable[[], Awaitable[None]],
        hold_off: float = DEFAULT_HOLD_OFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send_request = send_request
        self._hold_off = hold_off
        self._clock = clock
        self._last_sent = -1e9
        self._deferred: asyncio.TimerHandle | None = None
        self.requests_sent = 0
        self.requests_folded = 0

    def request(self) -> None:
        """Ask for a keyframe; safe to call from the packet path (never awaits)."""
        if self._deferred is not None:
            self.requests_folded += 1
            return
        wait = self._last_sent + self._hold_off - self._clock()
        if wait <= 0:
            self._send_now()
        else:
            self.requests_folded += 1
            self._deferred = asyncio.get_running_loop().call_later(wait, self._send_deferred)

    def keyframe_received(self) -> None:
        """A keyframe arrived: a deferred request has nothing left to ask for."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    def close(self) -> None:
        self.keyframe_received()

    def _send_deferred(self) -> None:
        self._deferred = None
        self._send_now()

    def _send_now(self) -> None:
        self._last_sent = self._clock()
        self.requests_sent += 1
        task = asyncio.ensure_future(self._send_request())
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger(__name__).warning("keyframe request failed: %r", task.exception())
