"""A capacity ramp: add rooms of light participants until a threshold breaks.

    python -m loadtest.capacity --room-size 4 --publishers 2 --step-rooms 2 \\
        --max-rooms 16 --hold 8 --out docs/capacity

Starts ``visio serve`` pinned to one core (``--rate-limit-connects off``) and
runs the light participants in this process on the other core. Every step
adds ``--step-rooms`` rooms, waits for their media, then holds ``--hold``
seconds and measures: participants held, forwarded packets/s (the server's
``/api/stats`` counters), the SFU's CPU (``/proc``), loss and freezes of the
received tracks, the p95 time to the first keyframe of the new
participants. It stops at the first broken threshold (or ``--max-rooms``)
and writes ``OUT.json`` and ``OUT.html`` (an inline SVG chart of load vs.
loss and CPU). Every loop is bounded in steps and time; all traffic is on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from loadtest.participant import LightParticipant, ParticipantConfig
from loadtest.proc_stats import tree_cpu


@dataclass
class Step:
    rooms: int
    participants: int
    forwarded_pps: float
    sfu_cpu_pct: float
    client_cpu_pct: float
    loss_pct: float
    freezes_per_minute: float
    join_p95_ms: float
    errors: int
    broken: str | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """CPU seconds of ``visio serve`` and its SFU worker processes (exact runtime)."""
    return tree_cpu(pid)[0]


def _counter(url: str, name: str) -> int:
    with urllib.request.urlopen(url + "/api/stats", timeout=5) as response:
        return int(json.load(response)["counters"].get(name, 0))


def _p95(values: list[float]) -> float:
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def _ramp(args: argparse.Namespace, url: str, pid: int) -> list[Step]:
    everyone: list[LightParticipant] = []
    steps: list[Step] = []
    loop = asyncio.get_running_loop()
    try:
        while len(steps) * args.step_rooms < args.max_rooms:
            first_room = len(steps) * args.step_rooms
            new = []
            for room in range(first_room, first_room + args.step_rooms):
                for seat in range(args.room_size):
                    new.append(LightParticipant(ParticipantConfig(
                        url, f"cap-{room}", f"p{room}-{seat}", publish=seat < args.publishers,
                        video_preset=args.video_size)))
            for participant in new:
                await participant.start()
                await asyncio.sleep(1 / args.join_rate)
            everyone += new
            await asyncio.sleep(args.settle)
            before = {id(p): p.report() for p in everyone}
            cpu0, client0, out0, at0 = (_proc_cpu(pid), time.process_time(),
                                        await loop.run_in_executor(None, _counter, url,
                                                                   "rtp_packets_out"),
                                        time.monotonic())
            await asyncio.sleep(args.hold)
            cpu1, client1, out1, at1 = (_proc_cpu(pid), time.process_time(),
                                        await loop.run_in_executor(None, _counter, url,
                                                                   "rtp_packets_out"),
                                        time.monotonic())
            window = at1 - at0
            lost = expected = freezes = 0
            video_seconds = 0.0
            for participant in everyone:
                old = {s["ssrc"]: s for s in before[id(participant)].streams}
                for stream in participant.report().streams:
                    previous = old.get(stream["ssrc"], {"lost": 0, "expected": 0, "freezes": 0})
                    lost += max(0, stream["lost"] - previous["lost"])
                    expected += stream["expected"] - previous["expected"]
                    if stream["kind"] == "video":
                        freezes += stream["freezes"] - previous["freezes"]
                        video_seconds += window
            joins = [p.milestones.get("first_keyframe", float("inf")) * 1000 for p in new
                     if p.config.publish is False or args.publishers > 1]
            errors = sum(p.error is not None for p in everyone)
            step = Step(rooms=first_room + args.step_rooms, participants=len(everyone),
                        forwarded_pps=(out1 - out0) / window,
                        sfu_cpu_pct=100 * (cpu1 - cpu0) / window,
                        client_cpu_pct=100 * (client1 - client0) / window,
                        loss_pct=100 * lost / expected if expected else 0.0,
                        freezes_per_minute=freezes / (video_seconds / 60) if video_seconds
                        else 0.0,
                        join_p95_ms=_p95(joins), errors=errors, broken=None)
            if step.loss_pct > args.max_loss_pct:
                step.broken = f"loss {step.loss_pct:.2f} % > {args.max_loss_pct:g} %"
            elif step.freezes_per_minute > args.max_freezes_per_minute:
                step.broken = (f"{step.freezes_per_minute:.2f} freezes/min > "
                               f"{args.max_freezes_per_minute:g}")
            elif step.join_p95_ms > args.max_join_p95_ms:
                step.broken = f"p95 join {step.join_p95_ms:.0f} ms > {args.max_join_p95_ms:g} ms"
            elif errors:
                step.broken = f"{errors} participant errors"
            steps.append(step)
            print(json.dumps(asdict(step)), flush=True)
            if step.broken is not None:
                break
    finally:
        await asyncio.gather(*(p.stop() for p in everyone), return_exceptions=True)
    return steps


def _svg_chart(steps: list[Step]) -> str:
    """Participants on x; CPU % and loss % (times 10) on y, as polylines."""
    width, height, pad = 640, 320, 40
    max_x = max((s.participants for s in steps), default=1) or 1
    series = [("SFU CPU % of one core", "#c0392b", [s.sfu_cpu_pct for s in steps]),
              ("client CPU %", "#7f8c8d", [s.client_cpu_pct for s in steps]),
              ("loss % x 10", "#2980b9", [10 * s.loss_pct for s in steps])]
    max_y = max([100.0, *(v for _, _, values in series for v in values)])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - 10}" y2="{height - pad}" '
             'stroke="black"/>',
             f'<line x1="{pad}" y1="10" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width // 2}" y="{height - 8}" font-size="12">participants '
             f'(0-{max_x})</text>',
             f'<text x="4" y="20" font-size="12">0-{max_y:.0f}</text>']
    for index, (label, colour, values) in enumerate(series):
        points = " ".join(
            f"{pad + (s.participants / max_x) * (width - pad - 10):.1f},"
            f"{height - pad - (v / max_y) * (height - pad - 10):.1f}"
            for s, v in zip(steps, values, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{pad + 10}" y="{24 + 16 * index}" font-size="12" '
                     f'fill="{colour}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_report(steps: list[Step], out: Path, command: str) -> None:
    broken = next((s for s in steps if s.broken), None)
    held = [s for s in steps if not s.broken]
    summary: dict[str, Any] = {
        "command": command,
        "participants_held": held[-1].participants if held else 0,
        "first_broken": broken.broken if broken else None,
        "steps": [asdict(s) for s in steps],
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = "\n".join(
        f"<tr><td>{s.rooms}</td><td>{s.participants}</td><td>{s.forwarded_pps:.0f}</td>"
        f"<td>{s.sfu_cpu_pct:.1f}</td><td>{s.client_cpu_pct:.1f}</td><td>{s.loss_pct:.2f}</td>"
        f"<td>{s.freezes_per_minute:.2f}</td><td>{s.join_p95_ms:.0f}</td>"
        f"<td>{s.broken or ''}</td></tr>" for s in steps)
    out.with_suffix(".html").write_text(
        "<!doctype html><meta charset='utf-8'><title>visio capacity</title>"
        f"<h1>visio capacity</h1><p><code>{command}</code></p>"
        f"<p>participants held: {summary['participants_held']}; first threshold broken: "
        f"{summary['first_broken'] or 'none'}</p>{_svg_chart(steps)}"
        "<table border='1'><tr><th>rooms</th><th>participants</th><th>forwarded pkt/s</th>"
        "<th>SFU CPU %</th><th>client CPU %</th><th>loss %</th><th>freezes/min</th>"
        f"<th>p95 join ms</th><th>broken</th></tr>{rows}</table>\n")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--video-size", default="180p")
    parser.add_argument("--step-rooms", type=int, default=2)
    parser.add_argument("--max-rooms", type=int, default=16)
    parser.add_argument("--join-rate", type=float, default=10.0, help="joins per second")
    parser.add_argument("--settle", type=float, default=4.0, help="s after a step's joins")
    parser.add_argument("--hold", type=float, default=8.0, help="measured s per step")
    parser.add_argument("--max-loss-pct", type=float, default=2.0)
    parser.add_argument("--max-freezes-per-minute", type=float, default=6.0)
    parser.add_argument("--max-join-p95-ms", type=float, default=5000.0)
    parser.add_argument("--out", type=Path, default=Path("capacity"))
    parser.add_argument("--workers", type=int, default=1,
                        help="SFU worker processes of visio serve, all on the server core "
                             "(default 1; 0: the SFU in the signaling process)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    command = f"{prog or 'python -m loadtest.capacity'} " + " ".join(argv)
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = ({cores[0]}, {cores[-1]})
    data = Path(tempfile.mkdtemp(prefix="visio-capacity-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, server_core)
    with (data / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "signaling", "serve", "--port",
                                   str(port), "--ice-announce", "127.0.0.1", "--mode",
                                   "development", "--data-dir", str(data),
                                   "--rate-limit-connects", "off",
                                   "--workers", str(args.workers)],
                                  stdout=log, stderr=subprocess.STDOUT)
    os.sched_setaffinity(0, client_core)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        budget = (args.max_rooms / args.step_rooms + 1) * (
            args.settle + args.hold + args.step_rooms * args.room_size / args.join_rate + 15)

        async def bounded() -> list[Step]:
            return await asyncio.wait_for(_ramp(args, url, server.pid), budget)

        steps = uvloop.run(bounded())
    finally:
        server.terminate()
        server.wait(timeout=15)
        os.sched_setaffinity(0, original)
    write_report(steps, args.out, command)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
