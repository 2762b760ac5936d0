"""A locust swarm of light WebRTC participants (docs/loadtest.md).

    locust -f loadtest/locustfile.py --headless -u 8 -r 4 -t 30s \\
        --host http://127.0.0.1:8080 --rooms 2 --participants-per-room 4

One locust user is one participant (``loadtest.participant``). Locust runs on
gevent; the participants run on one uvloop event loop in one real OS thread
per locust process (``loadtest.swarm.AsyncioHost``), started with gevent's
*original* ``_thread.start_new_thread``. Results come back as plain tuples in
a deque that one greenlet drains into locust request events:

* ``join`` / ``ws_open``, ``joined``, ``ice_connected``, ``first_rtp``,
  ``first_keyframe``: ms from the start of the participant;
* ``video`` or ``audio`` / ``bitrate_kbps``, ``loss_pct``, ``jitter_ms``: one
  sample per received track every 2 s (the "response time" is the value;
  locust's averages are exact, its percentiles rounded);
* ``video`` / ``freeze_ms`` (one per freeze > 500 ms), ``layer WxH`` (one per
  track and interval at that received size), ``source_paused``;
* failures: ``join`` errors, milestones not reached, participant errors.

Thresholds are checked when the test stops and make the process exit 1.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import gevent
import gevent.monkey
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtest.media_library import VIDEO_PRESETS
from loadtest.swarm import AsyncioHost, Driven, Scenario, Thresholds, check_thresholds
from loadtest.swarm import participant_config as make_config

logger = logging.getLogger("visio.loadtest")
HOST_START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0

_host: AsyncioHost | None = None
_counter = itertools.count()
_errors = 0


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("visio scenario")
    group.add_argument("--rooms", type=int, default=2, env_var="VISIO_LT_ROOMS",
                       help="rooms the users are spread over (round robin)")
    group.add_argument("--participants-per-room", type=int, default=4,
                       env_var="VISIO_LT_PARTICIPANTS_PER_ROOM",
                       help="planned participants per room (-u should be rooms x this)")
    group.add_argument("--publishers-per-room", type=int, default=2,
                       env_var="VISIO_LT_PUBLISHERS_PER_ROOM",
                       help="the first N of each room publish, the rest only listen")
    group.add_argument("--no-video", action="store_true", env_var="VISIO_LT_NO_VIDEO",
                       help="publish audio only")
    group.add_argument("--no-audio", action="store_true", env_var="VISIO_LT_NO_AUDIO",
                       help="publish video only")
    group.add_argument("--video-size", choices=sorted(VIDEO_PRESETS), default="180p",
                       env_var="VISIO_LT_VIDEO_SIZE", help="size of the published VP8")
    group.add_argument("--room-prefix", default="lt", env_var="VISIO_LT_ROOM_PREFIX",
                       help="rooms are named PREFIX-0, PREFIX-1, …")
    group.add_argument("--lt-workers", type=int, default=1, env_var="VISIO_LT_WORKERS",
                       help="distributed run: the number of workers (numbers participants "
                            "across workers)")
    group.add_argument("--media-deadline", type=float, default=10.0,
                       env_var="VISIO_LT_MEDIA_DEADLINE",
                       help="s after which a missing join milestone counts as a failure")
    group.add_argument("--max-join-p95-ms", type=float, default=5000.0,
                       env_var="VISIO_LT_MAX_JOIN_P95_MS",
                       help="threshold: p95 time to the first keyframe (first RTP without video)")
    group.add_argument("--max-loss-pct", type=float, default=2.0, env_var="VISIO_LT_MAX_LOSS_PCT",
                       help="threshold: mean loss % of received tracks")
    group.add_argument("--max-freezes-per-minute", type=float, default=2.0,
                       env_var="VISIO_LT_MAX_FREEZES_PER_MINUTE",
                       help="threshold: freezes per received video track and minute")
    group.add_argument("--max-errors", type=int, default=0, env_var="VISIO_LT_MAX_ERRORS",
                       help="threshold: failed requests (joins, milestones, participants)")


def _scenario(environment: Environment) -> Scenario:
    options = environment.parsed_options
    assert options is not None
    return Scenario(base_url=(environment.host or "http://127.0.0.1:8080").rstrip("/"),
                    rooms=options.rooms, participants_per_room=options.participants_per_room,
                    publishers_per_room=options.publishers_per_room,
                    video=not options.no_video, audio=not options.no_audio,
                    video_preset=options.video_size, room_prefix=options.room_prefix,
                    workers=max(1, options.lt_workers))


def _host_for(environment: Environment) -> AsyncioHost:
    """This process's loop thread, started on first use with a real OS thread."""
    global _host
    if _host is None:
        start_thread = gevent.monkey.get_original("_thread", "start_new_thread")
        _host = AsyncioHost(start_thread)
        _host.start()
        gevent.spawn(_pump, environment, _host)
    waited = 0.0  # every user waits for the loop, not only the one that started it
    while _host.loop is None and waited < HOST_START_TIMEOUT:
        gevent.sleep(0.05)
        waited += 0.05
    return _host


def _fire(environment: Environment, host: AsyncioHost) -> None:
    global _errors
    for request_type, name, value, length, error in host.drain():
        if error is not None:
            _errors += 1
        environment.events.request.fire(
            request_type=request_type, name=name, response_time=value,
            response_length=length, context={},
            exception=RuntimeError(error) if error is not None else None)


def _pump(environment: Environment, host: AsyncioHost) -> None:
    """The one greenlet that turns the loop thread's samples into locust events."""
    while not host.finished:
        _fire(environment, host)
        gevent.sleep(0.2)


def _stop_participants(environment: Environment) -> None:
    host = _host
    if host is None:
        return
    host.remove_all()
    waited = 0.0
    while host.running > 0 and waited < STOP_TIMEOUT:
        gevent.sleep(0.1)
        waited += 0.1
    _fire(environment, host)


class Participant(User):
    """One visio participant: joins on start, stays until stopped."""

    wait_time = constant(1)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._handle: Driven | None = None

    def on_start(self) -> None:
        environment = self.environment
        scenario = _scenario(environment)
        runner = environment.runner
        worker = runner.worker_index if isinstance(runner, WorkerRunner) else 0
        index = next(_counter) * scenario.workers + worker
        config, expects_media = make_config(scenario, index)
        options = environment.parsed_options
        deadline = options.media_deadline if options is not None else 10.0
        self._handle = _host_for(environment).add(config, expects_media, deadline)
        if self._handle is None:
            environment.events.request.fire(request_type="join", name="join", response_time=0,
                                            response_length=0, context={},
                                            exception=RuntimeError("asyncio host not running"))

    @task
    def stay(self) -> None:
        """Participants do nothing in greenlets: their media runs on the loop thread."""

    def on_stop(self) -> None:
        if self._handle is not None and _host is not None:
            _host.remove(self._handle)


def _verdict(environment: Environment) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    thresholds = Thresholds(options.max_join_p95_ms, options.max_loss_pct,
                            options.max_freezes_per_minute, options.max_errors)
    errors = sum(e.occurrences for e in environment.stats.errors.values())
    broken = check_thresholds(environment.stats.get, thresholds, not options.no_video, errors)
    for problem in broken:
        logger.error("threshold broken: %s", problem)
    if not broken:
        logger.info("all thresholds met")
    environment.process_exit_code = 1 if broken else 0


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        _stop_participants(environment)
    if not isinstance(environment.runner, (MasterRunner, WorkerRunner)):
        _verdict(environment)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        _stop_participants(environment)
    _verdict(environment)  # the master sees every worker's stats only now
    if _host is not None:
        _host.shutdown()
