"""Per-client-address rate limits: token buckets and the aiohttp middleware that applies them.

Three scopes, each ``count/period`` per client address (``--rate-limit-*``):

* ``connect``: WebSocket connections to ``/ws``. A socket joins at most once,
  so this bounds joins too.
* ``api``: REST calls under ``/api/v1/``.
* ``login``: ``POST /booking/login`` (password guessing).

A refused request gets ``429`` with ``Retry-After`` and the API's error shape,
``{"error": {"code": "rate_limited", "message": …, "retry_after": seconds}}``.
A whole school behind one NAT address shares a bucket: defaults are generous.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

MAX_TRACKED_ADDRESSES = 50_000
_PERIODS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds, in a burst of up to ``count``."""

    count: int
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        units = {1.0: "s", 60.0: "min", 3600.0: "h"}
        if self.period in units:
            return f"{self.count}/{units[self.period]}"
        return f"{self.count}/{self.period:g}s"


def parse_rate(text: str) -> Rate | None:
    """``"120/min"``, ``"10/s"``, ``"1000/h"``, ``"30/10s"``; ``"off"`` or ``"0"``: no limit."""
    if text.strip().lower() in ("off", "0", "none", ""):
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _PERIODS or int(match.group(1)) < 1:
        raise ValueError(f"rate limit {text!r}: expected COUNT/PERIOD such as 120/min, "
                         "10/s, 30/10s, or off")
    multiple = int(match.group(2)) if match.group(2) else 1
    if multiple < 1:
        raise ValueError(f"rate limit {text!r}: the period must be positive")
    return Rate(int(match.group(1)), multiple * _PERIODS[match.group(3)])


@dataclass
class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at ``rate`` per second; a request takes one."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.capacity


@dataclass
class RateLimiter:
    """One token bucket per key (a client address), least recently used forgotten first."""

    rate: Rate
    max_keys: int = MAX_TRACKED_ADDRESSES
    clock: Callable[[], float] = time.monotonic
    refused: int = 0
    _buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def check(self, key: str) -> float:
        """0.0 when the request may proceed, else the seconds the client should wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_idle(now)
            bucket = self._buckets[key] = TokenBucket(self.rate.count, self.rate.per_second,
                                                      self.rate.count, now)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait:
            self.refused += 1
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        """Before tracking one more address: drop full buckets, then the least recent."""
        if len(self._buckets) < self.max_keys:
            return
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)


@dataclass(frozen=True)
class RateLimitSettings:
    connect: Rate | None = Rate(120, 60.0)
    api: Rate | None = Rate(300, 60.0)
    login: Rate | None = Rate(20, 60.0)


class RateLimits:
    """The limiters of one server, by scope."""

    def __init__(self, settings: RateLimitSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.by_scope: dict[str, RateLimiter] = {
            scope: RateLimiter(rate, clock=clock)
            for scope, rate in (("connect", settings.connect), ("api", settings.api),
                                ("login", settings.login)) if rate is not None}

    @staticmethod
    def scope_of(request: web.Request) -> str | None:
        path = request.path
        if path == "/ws":
            return "connect"
        if path.startswith("/api/v1/"):
            return "api"
        if path == "/booking/login" and request.method == "POST":
            return "login"
        return None


RATE_LIMITS_KEY = web.AppKey("rate_limits", RateLimits)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def too_many_requests(wait: float, scope: str) -> web.Response:
    retry_after = max(1, math.ceil(wait))
    what = {"connect": "connections", "api": "API calls", "login": "login attempts"}[scope]
    return web.json_response(
        {"error": {"code": "rate_limited",
                   "message": f"too many {what} from this address: retry in {retry_after} s",
                   "retry_after": retry_after}},
        status=429, headers={"Retry-After": str(retry_after)})


def install_rate_limits(app: web.Application, settings: RateLimitSettings) -> RateLimits:
    """Adds the limits as the outermost middleware: refused requests cost nothing more."""
    limits = app[RATE_LIMITS_KEY] = RateLimits(settings)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = RateLimits.scope_of(request)
        limiter = limits.by_scope.get(scope) if scope else None
        if scope and limiter is not None:
            wait = limiter.check(request.remote or "unknown")
            if wait:
                return too_many_requests(wait, scope)
        return await handler(request)

    app.middlewares.insert(0, rate_limit)
    return limits
