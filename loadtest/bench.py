"""``visio bench``: measurements of the SFU (see docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import sys

from loadtest.bench_floor import run_floor
from loadtest.bench_forward import ForwardOptions, format_report, result_json, run_forward
from loadtest.bench_paths import run_paths
from loadtest.bench_workers import WorkersOptions, print_progress, run_workers
from loadtest.bench_workers import format_report as format_workers_report
from loadtest.bench_workers import result_json as workers_json


def configure_parser(parser: argparse.ArgumentParser) -> None:
    benches = parser.add_subparsers(dest="bench", required=True)
    forward = benches.add_parser(
        "forward",
        help="SFU CPU per forwarded and per ingested packet, P publishers -> N subscribers",
        description="Start `visio serve` pinned to one core, publish VP8 from P aiortc "
                    "peers to N counting (non-decoding) aiortc subscribers from this process "
                    "pinned to another core, and report the SFU's CPU time per packet over "
                    "a steady window.")
    defaults = ForwardOptions()
    forward.add_argument("--subscribers", type=int, default=defaults.subscribers,
                         help=f"subscribers in the room (default {defaults.subscribers})")
    forward.add_argument("--publishers", type=int, default=defaults.publishers,
                         help="publishers in the room, each sending its own VP8 to every "
                              f"subscriber (default {defaults.publishers})")
    forward.add_argument("--seconds", "--duration", dest="duration", type=float,
                         default=defaults.duration,
                         help=f"measured window in seconds (default {defaults.duration:g})")
    forward.add_argument("--repeats", type=int, default=defaults.repeats,
                         help="sub-windows the window is cut into; the headline figures are "
                              f"their medians (default {defaults.repeats})")
    forward.add_argument("--warmup", type=float, default=defaults.warmup,
                         help="seconds of traffic at the publishers' fixed bitrate (1.5 Mbit/s; "
                              "REMB is ignored) before the window opens "
                              f"(default {defaults.warmup:g})")
    forward.add_argument("--max-warmup", type=float, default=defaults.max_warmup,
                         help="longest warm-up, should an encoder not exist yet "
                              f"(default {defaults.max_warmup:g})")
    forward.add_argument("--workers", type=int, default=defaults.workers,
                         help="SFU worker processes of `visio serve`, all pinned to the SFU's "
                              "core; the SFU CPU is the whole server process tree's "
                              f"(default {defaults.workers}; 0: the SFU in-process)")
    forward.add_argument("--width", type=int, default=defaults.width,
                         help=f"published video width (default {defaults.width})")
    forward.add_argument("--height", type=int, default=defaults.height,
                         help=f"published video height (default {defaults.height})")
    forward.add_argument("--fps", type=int, default=defaults.fps,
                         help=f"published frame rate (default {defaults.fps})")
    forward.add_argument("--audio", action="store_true",
                         help="also publish an Opus track (about 50 packets/s)")
    forward.add_argument("--transport-cc", action="store_true",
                         help="subscribers send transport-cc feedback like browsers, so the "
                              "SFU stamps every packet and runs its send-side estimator")
    forward.add_argument("--sinks", type=int, default=defaults.sinks,
                         help="of the subscribers, this many drop their media in the kernel "
                              "once it flows (the SFU's work is unchanged, the generator's "
                              "gone); the others go on measuring loss")
    forward.add_argument("--replay", action="store_true",
                         help="publishers replay pre-encoded VP8 instead of encoding live "
                              "(about 0.2 core less for the load generator)")
    forward.add_argument("--server-cpu", type=int, default=defaults.server_cpu,
                         help=f"core the SFU process is pinned to (default {defaults.server_cpu})")
    forward.add_argument("--client-cpu", type=int, default=defaults.client_cpu,
                         help="core the load generator (this process) is pinned to "
                              f"(default {defaults.client_cpu})")
    forward.add_argument("--no-pin", action="store_true",
                         help="do not pin the SFU and the load generator to cores")
    forward.add_argument("--json", action="store_true",
                         help="print the result as JSON instead of a table")
    _configure_workers(benches.add_parser(
        "workers",
        help="loss-bounded forwarded packets/s with 1 and with more SFU workers, one run",
        description="Find, for each worker count, the largest lecture (1 publisher -> N "
                    "subscribers, `visio bench forward --replay --sinks N-readers --no-pin`) "
                    "forwarded with < 0.5 % loss; the counts' trials alternate so the "
                    "machine's drift hits all of them; report the ratios. Takes 15-20 "
                    "minutes; each trial is printed as it ends."))
    paths = benches.add_parser(
        "paths",
        help="the SFU's Python cost per ingested packet and per copy, no sockets or crypto",
        description="Run the real ingest and fan-out code on a synthetic VP8 stream in this "
                    "process (the wire replaced by a counter) and report µs of CPU per "
                    "ingested packet and per copy sent to one subscriber.")
    paths.add_argument("--packets", type=int, default=20_000, help="stream length (20000)")
    paths.add_argument("--subscribers", type=int, default=50, help="fan-out (default 50)")
    paths.add_argument("--repeats", type=int, default=5, help="passes; medians (default 5)")
    paths.add_argument("--no-transport-cc", action="store_true",
                       help="subscribers without transport-cc (no stamping)")
    paths.add_argument("--json", action="store_true", help="print JSON")
    floor = benches.add_parser(
        "floor",
        help="SRTP protect and UDP send alone: the floor under each forwarded copy",
        description="Time libsrtp's protect (AEAD AES-256-GCM) and a non-blocking sendto to "
                    "a receiver process reading on loopback, as the SFU's wire does them.")
    floor.add_argument("--json", action="store_true", help="print JSON")


def _configure_workers(parser: argparse.ArgumentParser) -> None:
    defaults = WorkersOptions()
    parser.add_argument("--workers", default=",".join(map(str, defaults.workers)),
                        help="worker counts, the first the baseline of the ratios "
                             f"(default {','.join(map(str, defaults.workers))})")
    for flag, field, text in (
            ("--start", "start", "subscribers per worker in each count's first trial"),
            ("--step", "step", "subscribers per worker added after a passing trial"),
            ("--max-trials", "max_trials", "trials in all"),
            ("--readers", "readers", "subscribers that keep reading and measure loss; the "
                                     "others drop media in the kernel")):
        default = getattr(defaults, field)
        parser.add_argument(flag, dest=field, type=int, default=default,
                            help=f"{text} (default {default})")
    parser.add_argument("--seconds", dest="duration", type=float, default=defaults.duration,
                        help=f"measured window of each trial (default {defaults.duration:g})")
    parser.add_argument("--warmup", type=float, default=defaults.warmup,
                        help=f"warm-up of each trial (default {defaults.warmup:g})")
    parser.add_argument("--transport-cc", action="store_true",
                        help="subscribers send transport-cc feedback like browsers")
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    if args.bench == "paths":
        return _paths(args)
    if args.bench == "workers":
        return _workers(args)
    if args.bench == "floor":
        return _floor(args)
    if args.bench != "forward":  # pragma: no cover - argparse only allows known benches
        return 2
    try:
        options = ForwardOptions(
            subscribers=args.subscribers,
            publishers=args.publishers,
            duration=args.duration,
            repeats=args.repeats,
            workers=args.workers,
            warmup=args.warmup,
            max_warmup=args.max_warmup,
            width=args.width,
            height=args.height,
            fps=args.fps,
            audio=args.audio,
            transport_cc=args.transport_cc,
            sinks=args.sinks,
            replay=args.replay,
            pin=not args.no_pin,
            server_cpu=args.server_cpu,
            client_cpu=args.client_cpu,
        )
        options.validate()
    except ValueError as exc:
        print(f"visio bench forward: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_forward(options)
    except Exception as exc:
        print(f"visio bench forward failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(result_json(result))
    else:
        print(format_report(result))
    return 0 if result.packets_forwarded > 0 else 1


def _paths(args: argparse.Namespace) -> int:
    if args.packets < 1000 or args.subscribers < 0 or args.repeats < 1:
        print("visio bench paths: need --packets >= 1000, --subscribers >= 0, --repeats >= 1",
              file=sys.stderr)
        return 2
    result = run_paths(args.packets, args.subscribers, args.repeats,
                       transport_cc=not args.no_transport_cc)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"ingest: {result.ingest_us_per_packet:.2f} µs per packet; fan-out: "
              f"{result.copy_us_per_forwarded_packet:.2f} µs per copy "
              f"({result.packets} packets, {result.subscribers} subscribers, transport-cc "
              f"{'on' if result.transport_cc else 'off'}; no SRTP, no sendto)")
    return 0


def _floor(args: argparse.Namespace) -> int:
    floor = run_floor()
    if args.json:
        print(json.dumps(floor.as_dict(), indent=2))
    else:
        print(f"SRTP protect {floor.srtp_protect_us:.2f} µs, sendto {floor.sendto_us:.2f} µs "
              f"(connected send {floor.connected_send_us:.2f} µs; to receivers not waiting "
              f"{floor.sink_sendto_us:.2f} µs) per 1,228-byte packet; a timer wake-up of an "
              f"idle process {floor.wakeup_us:.0f} µs")
    return 0


def _workers(args: argparse.Namespace) -> int:
    try:
        options = WorkersOptions(
            workers=_counts(args.workers),
            start=args.start, step=args.step, max_trials=args.max_trials,
            readers=args.readers, duration=args.duration, warmup=args.warmup,
            transport_cc=args.transport_cc)
        options.validate()
    except ValueError as exc:
        print(f"visio bench workers: {exc}", file=sys.stderr)
        return 2
    result = run_workers(options, progress=print_progress)
    print(workers_json(result) if args.json else format_workers_report(result))
    return 0 if all(result.best_pps.values()) else 1


def _counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(count) for count in text.split(","))
    except ValueError:
        raise ValueError("--workers wants comma-separated counts such as 1,2, "
                         f"not {text!r}") from None
