"""How many cores' worth of CPU this machine gives when all its cores are busy.

Two vCPUs of a VM need not be two cores: they may be hyperthreads of one
core, or share a busy host. A ratio such as "two SFU workers forward 1.8
times what one does" can only be read against what the machine itself gives,
so ``visio bench workers`` measures it in the same run: one spinner process
pinned to each core counts loop turns per second of its *own* CPU time
(being preempted does not make it slower; sharing the hardware does), first
alone, core by core, then all together.

This VM's speed moves by a quarter from one second to the next, so the
measurement is many short rounds, each "every core alone, then all
together", and the result is the median of the rounds' ratios: a drift hits
both halves of a round alike. The spinners are started once and told when
to spin, so no round pays a process start.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import time
from multiprocessing.connection import Connection

ROUND_SECONDS = 0.2  # each half of a round
ROUNDS = 15


def _spinner(cpu: int, commands: Connection) -> None:
    """Pinned to ``cpu``: for each duration received, spin that long and send the speed."""
    os.sched_setaffinity(0, {cpu})
    while (seconds := commands.recv()) is not None:
        turns, started = 0, time.process_time()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(1000):
                turns += 1
        commands.send(turns / max(time.process_time() - started, 1e-9))


def core_scaling(rounds: int = ROUNDS, seconds: float = ROUND_SECONDS) -> float:
    """Every core busy at once over one core alone, in cores (2.0: two full cores)."""
    cpus = sorted(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe() for _ in cpus]
    spinners = [context.Process(target=_spinner, args=(cpu, child), daemon=True)
                for cpu, (_, child) in zip(cpus, pipes, strict=True)]
    for spinner in spinners:
        spinner.start()
    for _, child in pipes:
        child.close()  # the spinner's copy is its own: one that dies is an EOFError, not a hang
    ends = [parent for parent, _ in pipes]
    try:
        ratios: list[float] = []
        for _ in range(rounds):
            alone: list[float] = []
            for end in ends:
                end.send(seconds)
                alone.append(float(end.recv()))
            for end in ends:
                end.send(seconds)
            together = [float(end.recv()) for end in ends]
            ratios.append(sum(together) / statistics.mean(alone))
        return statistics.median(ratios)
    finally:
        for end in ends:
            with contextlib.suppress(OSError):
                end.send(None)
        for spinner in spinners:
            spinner.join(timeout=5)
            if spinner.is_alive():
                spinner.kill()
