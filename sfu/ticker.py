"""One timer per event loop for many periodic callbacks (``Ticker``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

Callback = Callable[[], None]


class Ticker:
    """Calls many participants' periodic work from one timer.

    A sleeping task per participant and job costs, at every wake-up, a timer
    handle, a future and a task step: with hundreds of participants per
    process (an SFU worker's subscribers, a load generator's light clients)
    the wake-ups cost more than the work they run, and all of it is paid
    while the room is silent. Here one ``call_at`` chain per event loop and
    interval runs only what is due: a callback registered ``every`` k ticks
    runs on one tick in k, and callbacks sharing a period are dealt round the
    k phases, so a period's work is spread over it instead of arriving at
    once. ``soon`` asks for one call at the next tick (a NACK to send). The
    timer stops while nothing is registered.

    Callbacks are synchronous (they decide and send; anything longer starts
    its own task). One that raises is counted and logged; the others run.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Ticker]] = (
        weakref.WeakKeyDictionary())

    def __init__(self, interval: float, loop: asyncio.AbstractEventLoop) -> None:
        if interval <= 0:
            raise ValueError("a tick needs a positive interval")
        self.interval = interval
        self._loop = loop
        self._phases: dict[int, list[dict[int, Callback]]] = {}  # period -> its buckets
        self._dealt: dict[int, int] = {}  # period -> registrations so far (the next phase)
        self._soon: dict[Callback, None] = {}  # an ordered set: asked twice, called once
        self._keys = itertools.count()
        self._registered = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due_at = 0.0
        self.ticks = 0
        self.failures = 0
        self.last_failure = ""

    @classmethod
    def for_loop(cls, interval: float) -> Ticker:
        """The running loop's ticker for ``interval`` (created on first use)."""
        loop = asyncio.get_running_loop()
        tickers = cls._by_loop.setdefault(loop, {})
        ticker = tickers.get(interval)
        if ticker is None:
            ticker = tickers[interval] = cls(interval, loop)
        return ticker

    @property
    def registered(self) -> int:
        """Periodic callbacks currently registered."""
        return self._registered

    @property
    def running(self) -> bool:
        return self._handle is not None

    def every(self, ticks: int, callback: Callback) -> Callback:
        """Call ``callback`` once every ``ticks`` ticks; returns the function that stops it."""
        if ticks < 1:
            raise ValueError("a period is at least one tick")
        buckets = self._phases.get(ticks)
        if buckets is None:
            buckets = self._phases[ticks] = [{} for _ in range(ticks)]
        dealt = self._dealt.get(ticks, 0)
        self._dealt[ticks] = dealt + 1
        bucket = buckets[dealt % ticks]
        key = next(self._keys)
        bucket[key] = callback
        self._registered += 1
        self._arm()

        def cancel() -> None:
            if bucket.pop(key, None) is not None:
                self._registered -= 1

        return cancel

    def soon(self, callback: Callback) -> None:
        """Call ``callback`` once at the next tick, however often it is asked before."""
        self._soon[callback] = None
        self._arm()

    def _arm(self) -> None:
        if self._handle is None:
            self._due_at = self._loop.time() + self.interval
            self._handle = self._loop.call_at(self._due_at, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self.ticks += 1
        number = self.ticks
        for period, buckets in list(self._phases.items()):
            bucket = buckets[number % period]
            if bucket:
                for callback in list(bucket.values()):
                    self._call(callback)
        if self._soon:
            due, self._soon = self._soon, {}
            for callback in due:
                self._call(callback)
        if self._registered or self._soon:
            # On schedule, without drift; after a stall, from now (no burst of catch-up ticks).
            self._due_at = max(self._due_at + self.interval, self._loop.time())
            self._handle = self._loop.call_at(self._due_at, self._tick)

    def _call(self, callback: Callback) -> None:
        try:
            callback()
        except Exception as exc:  # one participant's failure must not stop the others'
            self.failures += 1
            self.last_failure = f"{type(exc).__name__}: {exc}"
            logger.exception("a periodic callback failed")

    def close(self) -> None:
        """Stop the timer and forget every callback (the loop is going away)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._phases.clear()
        self._soon.clear()
        self._registered = 0
