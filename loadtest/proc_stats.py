"""CPU, memory and core figures from /proc, for the benchmark and the capacity ramp.

``visio serve`` runs the SFU in worker processes, so its cost is the sum
over its whole process tree; each thread's exact runtime comes from
``schedstat`` (utime/stime are only sampled at every 10 ms tick).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of all threads of ``pid`` (fields 14-15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields from #3 (state) on
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def process_runtime(pid: int) -> float:
    """CPU seconds (user + system) of the live threads of ``pid``, to the nanosecond.

    The scheduler's own runtime (``/proc/<pid>/task/<tid>/schedstat``, first
    field) is exact, where utime/stime are sampled at every tick (10 ms): a
    2-s sub-window of a process at a few % of a core can show 0 ticks.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def core_times() -> dict[int, tuple[int, int, int]]:
    """Per core, from /proc/stat: (busy, steal, total) jiffies since boot.

    Busy excludes idle, iowait and steal; steal is time the hypervisor gave
    to another guest. Both tell whether the SFU really had its core alone.
    """
    result: dict[int, tuple[int, int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        numbers = [int(v) for v in values[:8]]
        idle, iowait, steal = numbers[3], numbers[4], numbers[7]
        total = sum(numbers)
        result[int(name[3:])] = (total - idle - iowait - steal, steal, total)
    return result


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (``visio serve`` runs the SFU in worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(f"/proc/{entry}/stat").read_text()
            parent = int(text[text.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def tree_cpu(pid: int) -> tuple[float, float, float]:
    """(exact runtime, tick-sampled user, tick-sampled system) summed over ``pid``'s tree."""
    runtime = user = system = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            member_user, member_system = process_cpu_times(member)
            runtime += process_runtime(member)
            user += member_user
            system += member_system
    return runtime, user, system


def allowed_cpus(pid: int) -> list[int]:
    """The union of the cores the threads of ``pid`` may run on."""
    cpus: set[int] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            cpus |= os.sched_getaffinity(int(tid))
    return sorted(cpus)


def pin_threads(pid: int, cpus: set[int]) -> None:
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)
