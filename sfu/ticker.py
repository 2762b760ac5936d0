"""One timer per event loop for many periodic callbacks (``Ticker``)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

Callback = Callable[[], None]


BATCH = 32  # callbacks of one period that share a tick before the next tick of it is used


class Ticker:
    """Calls many participants' periodic work from one timer, waking up only when some is due.

    A sleeping task per participant and job costs, at every wake-up, a timer
    handle, a future and a task step, and on this VM a wake-up from idle
    costs 100-150 µs of the process's CPU by itself (``uvloop`` timer at
    10-100 Hz, nothing else running; docs/benchmarks.md). With hundreds of
    participants per process (an SFU worker's subscribers, a load
    generator's light clients) the wake-ups cost more than the work, and
    all of it is paid while the room is silent.

    Here one ``call_at`` chain per event loop and interval runs what is due
    and then sleeps until the next tick that has something to run. A
    callback registered ``every`` k ticks runs on one tick in k; callbacks
    of one period share a tick up to ``BATCH`` of them (a short burst of
    work costs less than another wake-up), and beyond that are dealt to
    the period's other ticks, so hundreds do not all run at once. ``soon``
    asks for one call at the next tick (a NACK to send). Tick numbers
    follow the clock: after a stall the missed ticks that had work run at
    once, each once.

    Callbacks are synchronous (they decide and send; anything longer starts
    its own task). One that raises is counted and logged; the others run.
    """
    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Ticker]] = (
        weakref.WeakKeyDictionary())

    def __init__(self, interval: float, loop: asyncio.AbstractEventLoop,
                 batch: int = BATCH) -> None:
        if interval <= 0 or batch < 1:
            raise ValueError("a tick needs a positive interval and batch")
        self.interval = interval
        self.batch = batch
        self._loop = loop
        self._origin = loop.time()  # tick n is due at origin + n * interval
        self._phases: dict[int, list[dict[int, Callback]]] = {}  # period -> its buckets
        self._dealt: dict[int, int] = {}  # period -> registrations so far (the next phase)
        self._soon: dict[Callback, None] = {}  # an ordered set: asked twice, called once
        self._keys = itertools.count()
        self._registered = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = 0  # the tick the timer is set for, while it is set
        self.ticks = 0  # the number of the last tick run (ticks with nothing due are skipped)
        self.wakeups = 0
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
        phase = (dealt // self.batch) % ticks
        bucket = buckets[phase]
        key = next(self._keys)
        bucket[key] = callback
        self._registered += 1
        after = self._current_tick()
        self._arm_for(after + (phase - after - 1) % ticks + 1)  # its first tick from now

        def cancel() -> None:
            if bucket.pop(key, None) is not None:
                self._registered -= 1

        return cancel

    def soon(self, callback: Callback) -> None:
        """Call ``callback`` once at the next tick, however often it is asked before."""
        self._soon[callback] = None
        self._arm_for(self._current_tick() + 1)

    def _current_tick(self) -> int:
        """The last tick whose time has come (run or not)."""
        return max(self.ticks, int((self._loop.time() - self._origin) / self.interval))

    def _arm_for(self, number: int) -> None:
        """Make sure the timer goes off at tick ``number`` at the latest."""
        if self._handle is not None:
            if self._armed_for <= number:
                return
            self._handle.cancel()
        self._armed_for = number
        self._handle = self._loop.call_at(self._origin + number * self.interval, self._tick)

    def _next_due(self, number: int) -> int | None:
        """The first tick after ``number`` with something to run; None if there is none."""
        if self._soon:
            return number + 1
        ahead: int | None = None
        for period, buckets in self._phases.items():
            for distance in range(1, min(period, ahead or period) + 1):
                if buckets[(number + distance) % period]:
                    ahead = distance
                    break
        return None if ahead is None else number + ahead

    def _tick(self) -> None:
        self._handle = None
        number = self.ticks = self._armed_for
        self.wakeups += 1
        for period, buckets in list(self._phases.items()):
            bucket = buckets[number % period]
            if bucket:
                for callback in list(bucket.values()):
                    self._call(callback)
        if self._soon:
            due, self._soon = self._soon, {}
            for callback in due:
                self._call(callback)
        following = self._next_due(number)
        if following is not None:
            self._arm_for(following)

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
