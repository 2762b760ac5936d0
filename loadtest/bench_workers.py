"""What a second SFU worker buys: loss-bounded forwarded packets/s with 1 and with W workers.

A deployment sizes its machines by how many packets per second one node
forwards before subscribers lose packets, and by how that grows with the
cores given to it (``visio serve --workers N``). This bench finds, for each
worker count, the largest lecture (1 publisher → N subscribers,
``visio bench forward``) whose subscribers and SFU lose < 0.5 % of the
packets, and reports the ratio of the forwarded rates.

Why it is shaped like this:

* **One run, alternating.** This VM's speed drifts by 1.5 times within half an
  hour (docs/benchmarks.md), so the searches for each worker count step
  in turn (1, W, 1, W, …): a slow phase hits both, and the ratio compares
  neighbours, not a fast morning with a slow afternoon.
* **A step search, bracketed.** Each count starts at ``start * workers``
  subscribers and climbs by ``step * workers`` until a trial fails (loss,
  or the run could not complete: under overload the publisher's ICE
  consent expires and the room loses its video), then tries once halfway
  between its best pass and its first failure. A count whose limit was
  never bracketed by a failure is reported as a lower bound.
* **The machine's own scaling, measured in the same run**
  (``loadtest.core_scaling``): what every core busy at once gives over
  one, for plain Python, the ceiling any software's ratio is read against.
* **Kernel sinks and a replayed publisher**, as in the runs recorded by hand
  before this command existed: all but ``readers`` subscribers drop their
  media in the kernel once it flows (``--sinks``) and the publisher replays
  pre-encoded VP8, so the load generator, which shares the two cores, costs
  as little as possible. Nothing is pinned: the SFU's workers need both
  cores.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from loadtest.bench_forward import ForwardOptions, ForwardResult, run_forward
from loadtest.core_scaling import core_scaling

LOSS_LIMIT_PCT = 0.5


@dataclass(frozen=True)
class WorkersOptions:
    workers: tuple[int, ...] = (1, 2)  # the first is the baseline of the ratios
    start: int = 280  # subscribers per worker in each count's first trial
    step: int = 40  # subscribers per worker added after a pass
    max_trials: int = 10  # in all, across the counts
    readers: int = 20  # subscribers that go on reading and measuring loss
    duration: float = 10.0
    warmup: float = 5.0
    transport_cc: bool = False

    def validate(self) -> None:
        if len(self.workers) < 2 or len(set(self.workers)) != len(self.workers):
            raise ValueError("--workers needs two or more distinct counts, e.g. 1,2")
        if not all(1 <= count <= 8 for count in self.workers):
            raise ValueError("--workers counts must be between 1 and 8")
        if self.readers < 1:
            raise ValueError("--readers must be at least 1")
        if self.start * min(self.workers) <= self.readers:
            raise ValueError("--start * workers must exceed --readers")
        if self.step < 1:
            raise ValueError("--step must be at least 1")
        if self.max_trials < len(self.workers):
            raise ValueError("--max-trials must allow one trial per worker count")
        if not self.duration > 0 or self.warmup < 0:
            raise ValueError("--seconds must be positive and --warmup not negative")
        # what each trial will check, checked before the first one
        self.forward_options(self.workers[0], self.start * self.workers[0]).validate()

    def forward_options(self, workers: int, subscribers: int) -> ForwardOptions:
        return ForwardOptions(workers=workers, subscribers=subscribers,
                              sinks=subscribers - self.readers, replay=True, pin=False,
                              duration=self.duration, warmup=self.warmup,
                              transport_cc=self.transport_cc)


@dataclass
class Trial:
    """One ``visio bench forward`` run of the search."""

    workers: int
    subscribers: int
    command: str
    finished_utc: str
    forwarded_pps: float = 0.0
    loss_pct: float = 0.0  # the reading subscribers' RFC 3550 loss
    ingress_loss_pct: float = 0.0  # the publisher's packets the SFU never received
    sfu_cpu_pct: float = 0.0  # the whole server process tree, in % of one core
    sfu_cpu_us_per_forwarded_packet: float = 0.0
    error: str | None = None  # the run did not complete (why)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.forwarded_pps > 0
                and self.loss_pct < LOSS_LIMIT_PCT and self.ingress_loss_pct < LOSS_LIMIT_PCT)

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return f"failed: {self.error}"
        if not self.passed:
            return f"lost {self.loss_pct:.2f} % (ingress {self.ingress_loss_pct:.2f} %)"
        return "passed"


class LimitSearch:
    """The next lecture size to try for one worker count, from the trials so far."""

    def __init__(self, workers: int, options: WorkersOptions) -> None:
        self.workers = workers
        self._step = options.step * workers
        self._floor = options.readers + 1
        self.trials: list[Trial] = []
        self._next: int | None = options.start * workers

    @property
    def best(self) -> Trial | None:
        """The passing trial that forwarded most."""
        passed = [trial for trial in self.trials if trial.passed]
        return max(passed, key=lambda trial: trial.forwarded_pps) if passed else None

    @property
    def bracketed(self) -> bool:
        """A failure above the best pass: the limit lies between them, not beyond."""
        best = self.best
        return best is not None and any(
            not trial.passed and trial.subscribers > best.subscribers for trial in self.trials)

    def next_subscribers(self) -> int | None:
        return self._next

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        passes = [t.subscribers for t in self.trials if t.passed]
        fails = [t.subscribers for t in self.trials if not t.passed]
        highest_pass = max(passes, default=None)
        lowest_fail = min((n for n in fails if highest_pass is None or n > highest_pass),
                          default=None)
        if lowest_fail is None:  # climbing: no failure above the best pass yet
            self._next = trial.subscribers + self._step
        elif highest_pass is None:  # failing from the start: step down
            lower = lowest_fail - self._step
            self._next = lower if lower >= self._floor else None
        else:  # bracketed: halve the gap once it is worth a trial
            gap = lowest_fail - highest_pass
            self._next = highest_pass + gap // 2 if gap > self._step // 2 else None


@dataclass
class WorkersResult:
    command: str
    baseline_workers: int
    trials: list[Trial] = field(default_factory=list)
    # per worker count: the best loss-free forwarded rate, and whether a failure bracketed it
    best_pps: dict[int, float] = field(default_factory=dict)
    bracketed: dict[int, bool] = field(default_factory=dict)
    ratios: dict[int, float] = field(default_factory=dict)  # best_pps / the baseline's
    # what every core busy at once gives over one core, for plain Python (``core_scaling``)
    core_scaling: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["trials"] = [dict(asdict(trial), passed=trial.passed) for trial in self.trials]
        return data


Runner = Callable[[ForwardOptions], ForwardResult]


def run_workers(options: WorkersOptions, run: Runner = run_forward,
                progress: Callable[[Trial], None] | None = None,
                scaling: Callable[[], float] | None = None) -> WorkersResult:
    """Search every worker count's limit, their trials alternating; stops by itself.

    ``run`` and ``scaling`` are ``run_forward`` and ``core_scaling`` except in
    the search's own tests.
    """
    options.validate()
    machine = (scaling or core_scaling)()
    searches = [LimitSearch(count, options) for count in options.workers]
    trials: list[Trial] = []
    while len(trials) < options.max_trials:
        pending = [search for search in searches if search.next_subscribers() is not None]
        if not pending:
            break
        for search in pending:
            if len(trials) >= options.max_trials:
                break
            subscribers = search.next_subscribers()
            assert subscribers is not None
            trial = _trial(options.forward_options(search.workers, subscribers), run)
            search.record(trial)
            trials.append(trial)
            if progress is not None:
                progress(trial)
    return _summarise(options, searches, trials, machine)


def _trial(forward: ForwardOptions, run: Runner) -> Trial:
    trial = Trial(workers=forward.workers, subscribers=forward.subscribers,
                  command=forward.command(), finished_utc="")
    try:
        result = run(forward)
    except Exception as exc:  # a failed run is a finding of the search, not its end
        trial.error = _first_line(str(exc)) or type(exc).__name__
    else:
        trial.forwarded_pps = result.forwarded_pps
        trial.loss_pct = result.loss_pct
        trial.ingress_loss_pct = result.ingress_loss_pct
        trial.sfu_cpu_pct = result.sfu_cpu_pct
        trial.sfu_cpu_us_per_forwarded_packet = result.sfu_cpu_us_per_forwarded_packet
    trial.finished_utc = time.strftime("%H:%M:%S", time.gmtime())
    return trial


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _summarise(options: WorkersOptions, searches: list[LimitSearch],
               trials: list[Trial], core_scaling: float) -> WorkersResult:
    result = WorkersResult(command=command(options), baseline_workers=options.workers[0],
                           trials=trials, core_scaling=core_scaling)
    for search in searches:
        best = search.best
        result.best_pps[search.workers] = best.forwarded_pps if best else 0.0
        result.bracketed[search.workers] = search.bracketed
    baseline = result.best_pps[options.workers[0]]
    for count in options.workers[1:]:
        result.ratios[count] = result.best_pps[count] / baseline if baseline else 0.0
    return result


def command(options: WorkersOptions) -> str:
    """The command line that reproduces a run with these options."""
    defaults = WorkersOptions()
    parts = ["visio", "bench", "workers", "--workers", ",".join(map(str, options.workers))]
    for flag, value, default in (("--start", options.start, defaults.start),
                                 ("--step", options.step, defaults.step),
                                 ("--max-trials", options.max_trials, defaults.max_trials),
                                 ("--readers", options.readers, defaults.readers),
                                 ("--seconds", options.duration, defaults.duration),
                                 ("--warmup", options.warmup, defaults.warmup)):
        if value != default:
            parts.append(f"{flag} {value:g}")
    if options.transport_cc:
        parts.append("--transport-cc")
    return " ".join(parts)


def format_trial(trial: Trial) -> str:
    rate = f"{trial.forwarded_pps:9,.0f} packets/s" if trial.error is None else " " * 19
    return (f"{trial.finished_utc}  {trial.workers} worker(s)  {trial.subscribers:4d} "
            f"subscribers  {rate}  {trial.verdict}")


def format_report(result: WorkersResult) -> str:
    lines = [result.command, ""]
    lines += [format_trial(trial) for trial in result.trials]
    lines.append("")
    for count, pps in result.best_pps.items():
        bound = "" if result.bracketed[count] else " (no failure above it: a lower bound)"
        lines.append(f"{count} worker(s): {pps:,.0f} forwarded packets/s at < "
                     f"{LOSS_LIMIT_PCT:g} % loss{bound}")
    for count, ratio in result.ratios.items():
        lines.append(f"{count} workers / {result.baseline_workers}: {ratio:.2f} times")
    lines.append(f"this machine's cores, all busy, give {result.core_scaling:.2f} times one "
                 "core's speed (plain Python)")
    return "\n".join(lines)


def print_progress(trial: Trial) -> None:
    print(format_trial(trial), file=sys.stderr, flush=True)


def result_json(result: WorkersResult) -> str:
    return json.dumps(result.as_dict(), indent=2)
