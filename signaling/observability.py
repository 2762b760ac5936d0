"""Prometheus ``/metrics``, ``/readyz``, and the event-loop lag sampler.

The exposition is Prometheus' text format 0.0.4, written by hand: a handful
of gauges and counters read from ``SfuService.stats()`` at scrape time, and
two histograms filled by one small periodic task (event-loop lag, and each
subscriber's estimated bandwidth sampled every few seconds).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sfu import SfuApi, SfuService
from signaling.cluster.metrics import cluster_metrics
from signaling.ratelimit import RATE_LIMITS_KEY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE_INTERVAL = 0.5  # seconds between two event-loop lag probes
BANDWIDTH_SAMPLE_EVERY = 4  # lag probes between two bandwidth samples (2 s)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BANDWIDTH_BUCKETS = (50e3, 100e3, 200e3, 300e3, 500e3, 750e3, 1e6, 1.5e6, 2e6, 3e6, 5e6, 10e6)

# SfuCounters field -> (metric name, help). Every counter is exported; these get clearer names.
COUNTER_NAMES = {
    "rtp_packets_in": ("visio_rtp_packets_received_total", "RTP packets received from publishers"),
    "rtp_bytes_in": ("visio_rtp_bytes_received_total", "RTP bytes received from publishers"),
    "rtp_packets_out": ("visio_rtp_packets_forwarded_total",
                        "RTP packets forwarded to subscribers"),
    "rtp_bytes_out": ("visio_rtp_bytes_forwarded_total", "RTP bytes forwarded to subscribers"),
    "nacks_received": ("visio_nacks_received_total", "NACKs received from subscribers"),
    "nacks_sent_upstream": ("visio_nacks_sent_upstream_total", "NACKs sent to publishers"),
    "retransmissions": ("visio_retransmissions_total", "packets retransmitted from the SFU cache"),
    "plis_received": ("visio_plis_received_total", "PLIs received from subscribers"),
    "plis_sent_upstream": ("visio_plis_sent_upstream_total", "PLIs sent to publishers"),
}


@dataclass
class Histogram:
    """A cumulative Prometheus histogram (``le`` buckets, ``_sum`` and ``_count``)."""

    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> Iterable[str]:
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            cumulative += count
            yield f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {_number(self.total)}"
        yield f"{name}_count {self.count}"


class Monitor:
    """Samples event-loop lag (sleep overshoot) and subscribers' bandwidth estimates."""

    def __init__(self, sfu: SfuApi, interval: float = SAMPLE_INTERVAL) -> None:
        self._sfu = sfu
        self._interval = interval
        self.loop_lag = Histogram(LAG_BUCKETS)
        self.last_lag = 0.0
        self.subscriber_bandwidth = Histogram(BANDWIDTH_BUCKETS)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        probes = 0
        while True:
            started = time.monotonic()
            await asyncio.sleep(self._interval)
            self.last_lag = max(0.0, time.monotonic() - started - self._interval)
            self.loop_lag.observe(self.last_lag)
            probes += 1
            if probes % BANDWIDTH_SAMPLE_EVERY == 0:
                self.sample_bandwidth()

    def sample_bandwidth(self) -> None:
        for subscriber in self._sfu.stats()["subscribers"].values():
            estimate = subscriber.get("estimate_bps")
            if isinstance(estimate, int | float) and estimate > 0:
                self.subscriber_bandwidth.observe(float(estimate))


class Readiness:
    """Ready once the application started and the SFU's self-check passed; not while stopping."""

    def __init__(self) -> None:
        self.started = False
        self.stopping = False
        self.problem: str | None = None

    @property
    def ready(self) -> bool:
        return self.started and not self.stopping and self.problem is None


MONITOR_KEY = web.AppKey("monitor", Monitor)
READINESS_KEY = web.AppKey("readiness", Readiness)


def install_observability(app: web.Application, sfu: SfuApi,
                          sockets: set[web.WebSocketResponse]) -> None:
    """Routes ``/metrics`` and ``/readyz``; the monitor runs between startup and shutdown."""
    monitor = app[MONITOR_KEY] = Monitor(sfu)
    readiness = app[READINESS_KEY] = Readiness()

    async def metrics(request: web.Request) -> web.Response:
        text = render_metrics(await sfu.current_stats(), monitor, len(sockets))
        limits = request.app.get(RATE_LIMITS_KEY)
        if limits is not None:
            text += "# HELP visio_rate_limited_total requests refused with 429, by scope\n"
            text += "# TYPE visio_rate_limited_total counter\n"
            text += "".join(f'visio_rate_limited_total{{scope="{scope}"}} {limiter.refused}\n'
                            for scope, limiter in limits.by_scope.items())
        text += cluster_metrics(request.app)  # node-labelled lines when --redis-url is set
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def readyz(request: web.Request) -> web.Response:
        media = sfu.unavailable()  # e.g. no SFU worker process serves yet
        if readiness.ready and media is None:
            return web.json_response({"status": "ready"})
        reason = readiness.problem or ("stopping" if readiness.stopping else media or "starting")
        return web.json_response({"status": "not_ready", "reason": reason}, status=503)

    async def start(app: web.Application) -> None:
        try:
            SfuService.check_environment()
        except Exception as exc:  # reported by /readyz; create_app already ran it once
            readiness.problem = f"SFU self-check failed: {exc}"
        monitor.start()
        readiness.started = True

    async def stopping(app: web.Application) -> None:
        readiness.stopping = True
        await monitor.stop()

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    app.on_startup.append(start)
    app.on_shutdown.insert(0, stopping)


def render_metrics(stats: dict[str, Any], monitor: Monitor, websockets: int) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float | None = None) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        if value is not None:
            out.append(f"{name} {_number(value)}")

    sources: dict[str, dict[str, Any]] = stats["sources"]
    metric("visio_rooms", "gauge", "rooms with at least one participant", stats["rooms"])
    metric("visio_participants", "gauge", "participants in all rooms", stats["participants"])
    metric("visio_producers", "gauge", "published tracks (audio and video)", stats["producers"])
    metric("visio_consumers", "gauge", "subscriptions: one per (subscriber, published track)",
           sum(int(source["consumers"]) for source in sources.values()))
    metric("visio_websockets", "gauge", "open signaling WebSockets", websockets)
    counters: dict[str, int] = stats["counters"]
    for key, value in counters.items():
        name, help_text = COUNTER_NAMES.get(key, (f"visio_sfu_{key}_total",
                                                  f"SFU counter {key}"))
        metric(name, "counter", help_text, value)
    out.extend(worker_metrics(stats.get("workers") or []))
    metric("visio_subscriber_estimated_bandwidth_bps", "histogram",
           "each subscriber's estimated downlink bandwidth, sampled every 2 s")
    out.extend(monitor.subscriber_bandwidth.lines("visio_subscriber_estimated_bandwidth_bps"))
    metric("visio_event_loop_lag_seconds", "histogram",
           "how late a 0.5 s sleep on the event loop wakes up")
    out.extend(monitor.loop_lag.lines("visio_event_loop_lag_seconds"))
    metric("visio_event_loop_lag_last_seconds", "gauge", "the latest event-loop lag probe",
           monitor.last_lag)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    metric("process_cpu_seconds_total", "counter", "user and system CPU time of this worker",
           usage.ru_utime + usage.ru_stime)
    metric("process_resident_memory_max_bytes", "gauge", "peak resident set size",
           usage.ru_maxrss * 1024)
    metric("process_open_fds", "gauge", "open file descriptors", _open_fds())
    return "\n".join(out) + "\n"


WORKER_GAUGES = (
    ("visio_worker_up", "1 while the SFU worker process runs and answers", "alive"),
    ("visio_worker_restarts", "times the SFU worker process was restarted", "restarts"),
    ("visio_worker_rooms", "rooms (or room shards) served by the worker", "rooms"),
    ("visio_worker_participants", "participants served by the worker", "participants"),
    ("visio_worker_pipes", "pipes to other workers (rooms spanning workers)", "pipes"),
    ("visio_worker_draining", "1 while the worker takes no new participants", "draining"),
)


def worker_metrics(workers: list[dict[str, Any]]) -> list[str]:
    """Per-worker lines (label ``worker``) when the SFU runs in worker processes."""
    if not workers:
        return []
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, values: Iterable[tuple[int, float]]) -> None:
        out.extend((f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"))
        out.extend(f'{name}{{worker="{index}"}} {_number(value)}' for index, value in values)

    for name, help_text, key in WORKER_GAUGES:
        family(name, "gauge", help_text, ((w["index"], float(w.get(key) or 0)) for w in workers))
    family("visio_worker_cpu_ratio", "gauge", "CPU used by the worker over the last second "
           "(1.0 = one core)", ((w["index"], w["load"]["cpu"]) for w in workers))
    family("visio_worker_forwarded_packets_per_second", "gauge", "RTP packets the worker "
           "forwarded per second over the last second",
           ((w["index"], w["load"]["forwarded_pps"]) for w in workers))
    family("visio_worker_event_loop_lag_seconds", "gauge", "how late the worker's one-second "
           "report woke up: above ~20 ms the worker is saturated",
           ((w["index"], w["load"].get("loop_lag", 0.0)) for w in workers))
    keys = sorted({key for w in workers for key in w.get("counters", {})})
    for key in keys:
        name = COUNTER_NAMES.get(key, (f"visio_sfu_{key}_total", ""))[0]
        family(name.replace("visio_", "visio_worker_", 1), "counter",
               f"{key} of one SFU worker", ((w["index"], w["counters"].get(key, 0))
                                            for w in workers))
    return out


def _open_fds() -> float:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return math.nan


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
