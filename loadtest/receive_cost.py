"""The light client's own CPU per received packet (docs/loadtest.md).

    python -m loadtest.receive_cost --publishers 2 --listeners 20 --seconds 10

Starts ``visio serve`` and a publishing process (light participants sending
pre-encoded media) on one core, and N listening light participants in this
process on the other core; after a warm-up it divides this process's CPU
time (user + system) by the RTP packets its listeners received. Compare
``--aiortc-receive`` (aiortc's receive path with a raw hook) with the
default (SRTP read straight off the socket after the handshake).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import uvloop

from loadtest.participant import LightParticipant, ParticipantConfig


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds() -> float:
    return time.process_time()  # user + system, all threads, to the nanosecond


async def _publish(url: str, room: str, count: int, preset: str, seconds: float) -> None:
    publishers = [LightParticipant(ParticipantConfig(url, room, f"pub{i}", video_preset=preset))
                  for i in range(count)]
    for publisher in publishers:
        await publisher.start()
    await asyncio.sleep(seconds)
    await asyncio.gather(*(p.stop() for p in publishers))


async def _listen(url: str, room: str, count: int, direct: bool, warmup: float,
                  seconds: float, profile: bool = False) -> dict[str, float]:
    listeners = [LightParticipant(ParticipantConfig(url, room, f"sub{i}", publish=False,
                                                    direct_receive=direct))
                 for i in range(count)]
    for listener in listeners:
        await listener.start()
    await asyncio.sleep(warmup)
    profiler = cProfile.Profile() if profile else None
    cpu0, packets0, at0 = _cpu_seconds(), sum(p.packets for p in listeners), time.monotonic()
    if profiler is not None:
        profiler.enable()
    await asyncio.sleep(seconds)
    if profiler is not None:
        profiler.disable()
    cpu1, packets1, at1 = _cpu_seconds(), sum(p.packets for p in listeners), time.monotonic()
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    lost = sum(s["lost"] for p in listeners for s in p.report().streams)
    expected = sum(s["expected"] for p in listeners for s in p.report().streams)
    direct_packets = sum(p.direct_packets for p in listeners)
    await asyncio.gather(*(p.stop() for p in listeners))
    packets = packets1 - packets0
    return {"listeners": count, "direct_receive": direct, "window_s": at1 - at0,
            "packets": packets, "pps": packets / (at1 - at0),
            "client_cpu_pct": 100 * (cpu1 - cpu0) / (at1 - at0),
            "client_cpu_us_per_packet": 1e6 * (cpu1 - cpu0) / packets if packets else -1.0,
            "loss_pct": 100 * lost / expected if expected else 0.0,
            "direct_share": direct_packets / max(1, sum(p.packets for p in listeners))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--listeners", type=int, default=20)
    parser.add_argument("--preset", default="720p")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--aiortc-receive", action="store_true",
                        help="count at aiortc's DTLS hook instead of reading the socket")
    parser.add_argument("--profile", action="store_true",
                        help="print the listeners' cProfile (top 25 by own time) to stderr")
    parser.add_argument("--publish-only", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--room", default="cost", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_only:  # the child process
        uvloop.run(_publish(args.publish_only, args.room, args.publishers, args.preset,
                            args.seconds))
        return 0
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = ({cores[0]}, {cores[1]}) if len(cores) > 1 else (set(cores),) * 2
    data = Path(tempfile.mkdtemp(prefix="visio-cost-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    os.sched_setaffinity(0, server_core)  # children inherit it
    with (data / "server.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "signaling", "serve", "--port",
                                   str(port), "--ice-announce", "127.0.0.1", "--mode",
                                   "development", "--data-dir", str(data)], stdout=log,
                                  stderr=subprocess.STDOUT)
    publisher = None
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        total = 3600  # stopped below: joining N listeners takes a while before the window
        publisher = subprocess.Popen([sys.executable, "-m", "loadtest.receive_cost",
                                      "--publish-only", url, "--publishers",
                                      str(args.publishers), "--preset", args.preset,
                                      "--seconds", str(total)])
        os.sched_setaffinity(0, client_core)
        time.sleep(3)
        result = uvloop.run(_listen(url, "cost", args.listeners, not args.aiortc_receive,
                                    args.warmup, args.seconds, args.profile))
        result["publishers"] = args.publishers
        print(json.dumps(result, indent=2))
    finally:
        for process in (publisher, server):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
