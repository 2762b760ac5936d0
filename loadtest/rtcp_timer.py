"""One RTCP timer per event loop for every light participant (see ``RtcpTicker``)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable


class RtcpTicker:
    """One timer per event loop for every participant's periodic RTCP.

    A timer per participant costs a wake-up and a task step each; hundreds
    of participants per process would spend more on waking up than on their
    packets. Each registered ``tick`` (synchronous: it only decides and
    sends) is called every ``interval`` seconds with the tick's number.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RtcpTicker] = (
        weakref.WeakKeyDictionary())

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._clients: dict[int, Callable[[int], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.failures = 0
        self.last_failure = ""

    @classmethod
    def for_loop(cls, interval: float) -> RtcpTicker:
        loop = asyncio.get_running_loop()
        ticker = cls._by_loop.get(loop)
        if ticker is None:
            ticker = cls._by_loop[loop] = cls(interval)
        return ticker

    def add(self, key: int, tick: Callable[[int], None]) -> None:
        self._clients[key] = tick
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def remove(self, key: int) -> None:
        self._clients.pop(key, None)

    async def _run(self) -> None:
        while self._clients:
            await asyncio.sleep(self.interval)
            self.ticks += 1
            for tick in list(self._clients.values()):
                try:
                    tick(self.ticks)
                except (ConnectionError, OSError):
                    pass  # the participant is leaving; it removes itself
                except Exception as exc:  # one participant's bug must not stop the others'
                    self.failures += 1
                    self.last_failure = f"{type(exc).__name__}: {exc}"
