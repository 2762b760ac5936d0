"""The forwarding benchmark: SFU CPU time per forwarded and per ingested RTP packet.

A real ``visio serve`` subprocess is pinned to one core. This process, pinned
to another core, runs P aiortc publishers (VP8, optionally Opus) and N light
participants (``loadtest.participant``) that join the same room through the
signaling protocol and subscribe. The subscribers never decode: they read
SRTP off their sockets and count packets from their headers, in a child
process of their own on the same core (``loadtest.subscriber_pool``) whose
CPU time is the light client's cost per received packet.

After a warm-up, the SFU's CPU time (``/proc/<pid>/stat`` utime + stime) and
its packet counters (``GET /api/stats``) are read at both ends of a steady
window; their ratio is the cost per packet. All traffic is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import math
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import uvloop
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import VideoFrame

from loadtest.media_library import ReplayTrack, handle_publisher_rtcp, vp8_clip
from loadtest.proc_stats import (
    allowed_cpus,
    core_times,
    pin_threads,
    process_tree,
    resident_mb,
    tree_cpu,
)
from loadtest.signaling_client import SignalingClient
from loadtest.subscriber_pool import JOIN_SECONDS, PoolSample, SubscriberPool
from sfu.aiortc_bridge import (
    IceSettings,
    configure_aiortc,
    new_peer_connection,
    pin_ice_addresses,
)

LOOPBACK = IceSettings("127.0.0.1", "127.0.0.1")
VIDEO_CLOCK = 90000
SERVER_START_TIMEOUT = 20.0
CLOSE_TIMEOUT = 5.0
PUBLISHED_BITRATE = 1_500_000  # bit/s: aiortc's VP8 cap (aiortc.codecs.vpx.MAX_BITRATE)
QUIET_THRESHOLD = 3.0  # % of a core used on the SFU's core by anything but the SFU
COUNTERS_REPORTED = (
    "rtp_malformed", "rtp_unknown_ssrc", "rtp_dropped_unknown_payload", "rtp_padding_dropped",
    "consumer_errors", "ingress_errors", "send_failures", "nacks_received",
    "nacks_sent_upstream", "retransmissions", "plis_received", "plis_sent_upstream",
    "remb_sent_upstream", "rtcp_malformed", "rtcp_feedback_direct",
)


@dataclass
class ForwardOptions:
    subscribers: int = 20
    duration: float = 10.0  # the measured window (``--seconds``)
    publishers: int = 1
    # SFU worker processes of ``visio serve`` (0: the SFU inside the signaling process). One
    # worker pinned to one core is the unit a deployment multiplies by its cores.
    workers: int = 1
    # The window is cut into this many equal sub-windows; the headline figures are the
    # medians of the sub-windows' ratios, so one perturbed second does not move them.
    repeats: int = 5
    warmup: float = 5.0
    width: int = 640
    height: int = 480
    fps: int = 30
    audio: bool = False
    # Subscribers answer transport-cc and report arrivals like browsers, so the SFU stamps
    # every packet and runs its send-side estimator (and probes) for each of them.
    transport_cc: bool = False
    # Of the subscribers, this many drop their media in the kernel once it flows
    # (``loadtest.kernel_sink``): the SFU's work is unchanged, the generator's is gone, and
    # the rest go on reading and measuring loss. For fan-outs the generator could not read.
    sinks: int = 0
    # The publishers replay pre-encoded VP8 (``loadtest.media_library``) instead of
    # encoding live: ~0.2 core less for the generator, the same packets for the SFU.
    replay: bool = False
    pin: bool = True
    server_cpu: int = 0
    client_cpu: int = 1
    max_warmup: float = 20.0  # s: give up waiting for the publishers' encoders to exist
    ready_timeout: float = 30.0  # s for every subscriber to receive media

    def validate(self) -> None:
        if self.subscribers < 1:
            raise ValueError("--subscribers must be at least 1")
        if not 0 <= self.sinks < self.subscribers:
            raise ValueError("--sinks must be 0 to --subscribers - 1: one subscriber at "
                             "least goes on measuring")
        if not 0 <= self.workers <= 8:
            raise ValueError("--workers must be between 0 and 8")
        if not 1 <= self.publishers <= 8:
            raise ValueError("--publishers must be between 1 and 8")
        if not self.duration > 0 or self.warmup < 0:
            raise ValueError("--seconds must be positive and --warmup not negative")
        if not 1 <= self.repeats <= 60 or self.duration / self.repeats < 0.5:
            raise ValueError("--repeats must be between 1 and 60, with sub-windows of at "
                             "least 0.5 s")
        if self.max_warmup < self.warmup:
            raise ValueError("--max-warmup must be at least --warmup")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError("--width and --height must be even and at least 16")
        if not 1 <= self.fps <= 60:
            raise ValueError("--fps must be between 1 and 60")
        if self.pin:
            available = os.sched_getaffinity(0)
            if self.server_cpu == self.client_cpu:
                raise ValueError("--server-cpu and --client-cpu must differ")
            for cpu in (self.server_cpu, self.client_cpu):
                if cpu not in available:
                    raise ValueError(f"core {cpu} is not available to this process "
                                     f"(available: {sorted(available)}); use --no-pin")

    def command(self) -> str:
        """The command line that reproduces a run with these options."""
        defaults = ForwardOptions()
        parts = ["visio", "bench", "forward", f"--subscribers {self.subscribers}"]
        if self.publishers != defaults.publishers:
            parts.append(f"--publishers {self.publishers}")
        parts += [f"--seconds {self.duration:g}", f"--warmup {self.warmup:g}"]
        if self.repeats != defaults.repeats:
            parts.append(f"--repeats {self.repeats}")
        if self.workers != defaults.workers:
            parts.append(f"--workers {self.workers}")
        if self.max_warmup != defaults.max_warmup:
            parts.append(f"--max-warmup {self.max_warmup:g}")
        if (self.width, self.height) != (defaults.width, defaults.height):
            parts.append(f"--width {self.width} --height {self.height}")
        if self.fps != defaults.fps:
            parts.append(f"--fps {self.fps}")
        if self.audio:
            parts.append("--audio")
        if self.transport_cc:
            parts.append("--transport-cc")
        if self.sinks:
            parts.append(f"--sinks {self.sinks}")
        if self.replay:
            parts.append("--replay")
        if not self.pin:
            parts.append("--no-pin")
        elif (self.server_cpu, self.client_cpu) != (defaults.server_cpu, defaults.client_cpu):
            parts.append(f"--server-cpu {self.server_cpu} --client-cpu {self.client_cpu}")
        return " ".join(parts)


@dataclass
class ForwardResult:
    command: str
    # The headline: medians over the window's sub-windows (see ``ForwardOptions.repeats``).
    sfu_cpu_us_per_forwarded_packet: float
    sfu_cpu_us_per_ingested_packet: float  # ingested = RTP packets received from publishers
    forwarded_pps: float
    ingested_pps: float
    loss_pct: float  # RFC 3550 loss the subscribers saw (sequence gaps), whole window
    sfu_cpu_pct: float  # of one core
    # The light subscribers' own CPU (their process: receive, counting, RTCP, timers).
    client_cpu_us_per_received_packet: float
    client_cpu_pct: float
    # publisher packets that never reached the SFU: its RFC 3550 sequence gaps (the count
    # against the publishers' own would skew by the time between the two reads)
    ingress_loss_pct: float
    publishers: int
    subscribers: int
    media: str
    warmup_s: float  # from the first packet at every subscriber to the window's start
    bitrate_settled: bool  # every publisher's encoder was fixed at its bitrate before
    encoder_target_bps_start: int  # the publisher's VP8 target bitrate (moved by REMB)
    encoder_target_bps_end: int  # at the window's start and end
    window_s: float
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    in_pps: float
    out_pps: float
    in_mbps: float
    sfu_cpu_s: float  # exact runtime of the SFU's threads (schedstat)
    sfu_user_s: float  # user / system split sampled at every tick (10 ms)
    sfu_system_s: float
    sfu_cpu_percent: float
    us_per_packet_out: float
    us_per_packet_in: float
    delivered: int  # packets all subscribers received in the window
    delivered_per_subscriber_min: int
    delivered_per_subscriber_max: int
    delivery_ratio: float  # delivered / packets_out
    delivered_pps_min: float  # steadiness: lowest and highest sub-window delivery rate
    delivered_pps_max: float
    publisher_packets_sent: int
    generator_cpu_percent: float
    sfu_rss_mb: float
    samples: list[dict[str, float]] = field(default_factory=list)  # one per sub-window
    cores: dict[int, dict[str, float]] = field(default_factory=dict)  # busy/steal % per core
    other_load_on_sfu_core_percent: float = 0.0  # busy time of the SFU's core not the SFU's
    counters_delta: dict[str, int] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    # The same run taken apart (``Decomposition``): what one more forwarded packet, one more
    # ingested packet and the connections alone cost, from two extra short windows.
    sfu_marginal_us_per_forwarded_packet: float = math.nan
    sfu_marginal_us_per_ingested_packet: float = math.nan
    sfu_idle_cpu_pct: float = math.nan
    sinks: int = 0  # subscribers whose media the kernel dropped (not in delivered/loss)
    videos_paused: int = 0  # times in the window the SFU paused a subscriber's video

    @property
    def packets_forwarded(self) -> int:
        return self.packets_out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- environment


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def source_revision() -> str:
    """The git commit of the code under test, ``+dirty`` if sfu/ or signaling/ differ from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                                capture_output=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sfu", "signaling"],
                               cwd=repo, text=True, capture_output=True, timeout=5,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment(options: ForwardOptions, server_pid: int) -> dict[str, Any]:
    versions = {}
    for package in ("aiortc", "aioice", "uvloop", "av", "pylibsrtp", "aiohttp"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "revision": source_revision(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
        "sfu_cpus": sorted({cpu for member in process_tree(server_pid)
                            for cpu in allowed_cpus(member)}),
        "sfu_processes": len(process_tree(server_pid)),
        "sfu_workers": options.workers,
        "generator_cpus": sorted(os.sched_getaffinity(0)),
        "pinned": options.pin,
    }


# --------------------------------------------------------------------------- server


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(options: ForwardOptions, log_dir: Path) -> _Server:
    """``visio serve`` on a free loopback port; pinned by inheritance, then thread by thread."""
    port = _free_port()
    log_path = log_dir / f"visio-serve-{port}.log"
    # Development mode: joins by room name, no booking token; its data stays in log_dir.
    command = [sys.executable, "-m", "signaling", "serve", "--port", str(port),
               "--ice-announce", "127.0.0.1", "--mode", "development",
               "--data-dir", str(log_dir), "--workers", str(options.workers),
               # a private server: every participant comes from 127.0.0.1 and joins one room,
               # so the per-address join limit and the room cap (100) would stop a big run
               "--rate-limit-connects", "off",
               "--max-participants", str(max(100, options.subscribers + options.publishers))]
    with log_path.open("wb") as log:
        if options.pin:
            os.sched_setaffinity(0, {options.server_cpu})  # the child inherits this mask
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=log_dir)
        finally:
            if options.pin:
                os.sched_setaffinity(0, {options.client_cpu})
    server = _Server(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"visio serve exited with {process.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                _stop_server(server)
                raise RuntimeError("visio serve did not answer /healthz within "
                                   f"{SERVER_START_TIMEOUT:g} s") from None
            time.sleep(0.1)
    if options.pin:
        for member in process_tree(process.pid):
            pin_threads(member, {options.server_cpu})
    return server


def _stop_server(server: _Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


# --------------------------------------------------------------------------- peers


class SyntheticVideo(VideoStreamTrack):
    """A moving gradient with noise, paced at ``fps``: enough detail to use the whole bitrate."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        super().__init__()
        self.fps = fps
        self.frames_sent = 0
        self._started_at: float | None = None
        rng = np.random.default_rng(7)
        rows = height * 3 // 2  # yuv420p: Y plane, then U and V planes of a quarter each
        base = np.empty((rows, width), dtype=np.int16)
        base[:height] = np.linspace(16, 235, width, dtype=np.int16)[None, :]
        base[height:] = 128
        self._images = []
        for index in range(fps):
            image = np.roll(base, index * 6, axis=1)
            image[:height] += rng.integers(-12, 13, size=(height, width), dtype=np.int16)
            self._images.append(np.clip(image, 0, 255).astype(np.uint8))

    async def recv(self) -> VideoFrame:
        if self._started_at is None:
            self._started_at = time.monotonic()
        delay = self._started_at + self.frames_sent / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # A new frame every time: the encoder may mark the object it gets as a keyframe.
        frame = VideoFrame.from_ndarray(self._images[self.frames_sent % len(self._images)],
                                        format="yuv420p")
        frame.pts = self.frames_sent * VIDEO_CLOCK // self.fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.frames_sent += 1
        return frame


class BenchPublisher:
    """Joins the room and publishes VP8 (and optionally Opus) from this process."""

    def __init__(self, base_url: str, room: str, options: ForwardOptions,
                 name: str = "publisher") -> None:
        self.signaling = SignalingClient(base_url)
        self.room = room
        self.name = name
        self.options = options
        self.pc: RTCPeerConnection = new_peer_connection()

    async def start(self) -> None:
        await self.signaling.connect()
        await self.signaling.request({"type": "join", "v": 1, "room": self.room,
                                      "name": self.name})
        options = self.options
        if options.audio:
            self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        track: ReplayTrack | SyntheticVideo
        if options.replay:
            track = ReplayTrack("video", vp8_clip(options.width, options.height,
                                                  PUBLISHED_BITRATE, options.fps))
        else:
            track = SyntheticVideo(options.width, options.height, options.fps)
        video = self.pc.addTransceiver(track, direction="sendonly")
        handle_publisher_rtcp(video.sender, track, ignore_remb=True)
        pin_ice_addresses(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await self.signaling.request({"type": "publish_offer",
                                              "sdp": self.pc.localDescription.sdp})
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def state(self) -> str:
        pc = self.pc
        return (f"is {pc.connectionState} (ICE {pc.iceConnectionState}), "
                f"{await self.packets_sent()} packets sent")

    def _encoder(self) -> Any:
        for sender in self.pc.getSenders():
            encoder = getattr(sender, "_RTCRtpSender__encoder", None)
            if sender.kind == "video" and encoder is not None:
                return encoder
        return None

    def target_bitrate(self) -> int:
        """The VP8 encoder's current target (0 before its first frame)."""
        return int(getattr(self._encoder(), "target_bitrate", 0))

    def fix_bitrate(self) -> bool:
        """Set the encoder to aiortc's cap (REMB is ignored); False if it does not exist yet."""
        encoder = self._encoder()
        if encoder is None:
            return False
        encoder.target_bitrate = PUBLISHED_BITRATE
        return True

    def silence(self) -> None:
        """Stop sending media but stay in the room (RTCP goes on; the SFU keeps the source)."""
        for sender in self.pc.getSenders():
            sender._enabled = False  # aiortc then drops each frame instead of encoding it

    async def packets_sent(self) -> int:
        total = 0
        for sender in self.pc.getSenders():
            report = await sender.getStats()
            total += sum(s.packetsSent for s in report.values() if s.type == "outbound-rtp")
        return total

    async def close(self) -> None:
        await _close_peer(self.signaling, self.pc, None)


async def _close_peer(signaling: SignalingClient, pc: RTCPeerConnection | None,
                      task: asyncio.Task[None] | None) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(signaling.send({"type": "leave"}), CLOSE_TIMEOUT)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if pc is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(signaling.close(), CLOSE_TIMEOUT)


# --------------------------------------------------------------------------- measurement


@dataclass
class _Snapshot:
    at: float
    sfu_user: float
    sfu_system: float
    sfu_runtime: float
    counters: dict[str, int]
    delivered: list[int]
    published: int
    generator_cpu: float
    cores: dict[int, tuple[int, int, int]]
    client: PoolSample
    ingress: tuple[int, int]  # the SFU's received, expected publisher packets (sequence)


def _ingress(stats: dict[str, Any]) -> tuple[int, int]:
    """Publisher packets the SFU received and expected (sequence numbers), every source
    counted once, on its publisher's worker."""
    received = expected = 0
    for source in (stats.get("sources") or {}).values():
        for layer in source.get("layers") or ():
            received += int(layer.get("received", 0))
            expected += int(layer.get("expected", 0))
    return received, expected


async def _snapshot(http: aiohttp.ClientSession, base_url: str, pid: int,
                    publishers: list[BenchPublisher], pool: SubscriberPool) -> _Snapshot:
    sfu_runtime, sfu_user, sfu_system = tree_cpu(pid)
    cores = core_times()
    at = time.monotonic()
    before = await pool.sample()
    generator_cpu = time.process_time()
    async with http.get(base_url + "/api/stats") as response:
        response.raise_for_status()
        stats = await response.json()
    counters: dict[str, int] = stats["counters"]
    after = await pool.sample()
    # The server read its counters somewhere during the request: compare at the midpoint.
    delivered = [(a + b) // 2 for a, b in zip(before.packets, after.packets, strict=True)]
    published = sum([await p.packets_sent() for p in publishers])
    return _Snapshot(at, sfu_user, sfu_system, sfu_runtime, counters, delivered, published,
                     generator_cpu, cores, after, _ingress(stats))


async def _wait_until_flowing(options: ForwardOptions, pool: SubscriberPool,
                              server: _Server, publishers: list[BenchPublisher]) -> None:
    # Every join renegotiates with the room: hundreds take longer than the default allows.
    timeout = max(options.ready_timeout, options.subscribers * JOIN_SECONDS)
    deadline = time.monotonic() + timeout
    while True:
        waiting, errors, states = await pool.waiting(options.audio)
        if errors:
            raise RuntimeError("subscriber failed: " + "; ".join(errors[:3]))
        if server.process.poll() is not None:
            raise RuntimeError(f"visio serve died:\n{server.log_tail()}")
        for publisher in publishers:
            if publisher.pc.connectionState in ("failed", "closed"):
                raise RuntimeError(f"{publisher.name}'s connection {await publisher.state()}: "
                                   f"{waiting} subscribers never received media")
        if not waiting:
            return
        if time.monotonic() > deadline:
            publishing = [await p.state() for p in publishers]
            raise RuntimeError(f"{waiting} of {options.subscribers} subscribers received no "
                               f"media within {timeout:g} s (they are at: "
                               f"{'; '.join(states[:4])}; publishers: "
                               f"{'; '.join(publishing)})")
        await asyncio.sleep(0.1)


async def _settle(options: ForwardOptions,
                  publishers: list[BenchPublisher]) -> tuple[float, bool]:
    """Warm up: fix every publisher's VP8 bitrate, then let ``warmup`` s of traffic pass.

    aiortc's VP8 encoder starts at 500 kbit/s and follows the SFU's REMB up to
    its 1.5 Mbit/s cap, restarting with a keyframe at every 10 % step; on a
    busy machine the estimate wanders and a window would see a moving input.
    The publishers ignore REMB and their encoders are set to the cap as soon
    as they exist, so the input is constant. Returns the warm-up used and
    whether every encoder was fixed before the window opened.
    """
    started = time.monotonic()
    fixed_at: float | None = None
    while True:
        now = time.monotonic()
        if fixed_at is None and all([p.fix_bitrate() for p in publishers]):
            fixed_at = now
        if fixed_at is not None and now - fixed_at >= options.warmup:
            return now - started, True
        if now - started >= options.max_warmup:
            return now - started, fixed_at is not None
        await asyncio.sleep(0.1)


async def _drive(options: ForwardOptions, server: _Server) -> ForwardResult:
    pid = server.process.pid
    room = f"bench-{secrets.token_hex(3)}"
    publishers = [BenchPublisher(server.base_url, room, options, f"publisher{i}")
                  for i in range(options.publishers)]
    if options.transport_cc:
        configure_aiortc()  # this process's aiortc then answers transport-cc
    pool = SubscriberPool(server.base_url, room, options.subscribers, audio=options.audio,
                          transport_cc=options.transport_cc, sinks=options.sinks)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        try:
            for publisher in publishers:
                await publisher.start()
            await pool.start()
            await _wait_until_flowing(options, pool, server, publishers)
            warmup, settled = await _settle(options, publishers)
            target_start = sum(p.target_bitrate() for p in publishers)
            snapshots = [await _snapshot(http, server.base_url, pid, publishers, pool)]
            step = options.duration / options.repeats
            for index in range(1, options.repeats + 1):
                delay = snapshots[0].at + index * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                snapshots.append(await _snapshot(http, server.base_url, pid, publishers, pool))
            rss = sum(resident_mb(member) for member in process_tree(pid))
            target_end = sum(p.target_bitrate() for p in publishers)
            env = environment(options, pid)
            parts = await _decompose(http, server.base_url, pid, publishers, pool,
                                     snapshots[0], snapshots[-1])
        finally:
            await asyncio.gather(pool.close(), *(p.close() for p in publishers),
                                 return_exceptions=True)
    result = _result(options, snapshots, rss, env, (warmup, settled, target_start, target_end))
    result.sfu_marginal_us_per_forwarded_packet = parts.forwarded_us
    result.sfu_marginal_us_per_ingested_packet = parts.ingested_us
    result.sfu_idle_cpu_pct = parts.idle_pct
    return result


PHASE_SETTLE = 1.5  # s for the SFU to act on a change before a decomposition window opens
PHASE_WINDOW = 3.0  # s of each decomposition window


@dataclass
class Decomposition:
    """The window's CPU split into forwarding, ingest and the connections' idle cost.

    After the main window, the subscribers hide every video (the SFU pauses
    their consumers: packets are still ingested, none forwarded), then the
    publishers stop sending (nothing is ingested; every connection, source and
    consumer stays, with its RTCP).
    CPU rates in the three windows give, per packet, the cost of one more
    forwarded packet, of one more ingested one, and the idle rest.
    """

    forwarded_us: float
    ingested_us: float
    idle_pct: float


def _cpu_rate(start: _Snapshot, end: _Snapshot) -> float:
    return (end.sfu_runtime - start.sfu_runtime) / (end.at - start.at)


def _rate(start: _Snapshot, end: _Snapshot, counter: str) -> float:
    return (end.counters[counter] - start.counters[counter]) / (end.at - start.at)


async def _phase(http: aiohttp.ClientSession, base_url: str, pid: int,
                 publishers: list[BenchPublisher], pool: SubscriberPool
                 ) -> tuple[_Snapshot, _Snapshot]:
    await asyncio.sleep(PHASE_SETTLE)
    first = await _snapshot(http, base_url, pid, publishers, pool)
    await asyncio.sleep(PHASE_WINDOW)
    return first, await _snapshot(http, base_url, pid, publishers, pool)


async def _decompose(http: aiohttp.ClientSession, base_url: str, pid: int,
                     publishers: list[BenchPublisher], pool: SubscriberPool,
                     start: _Snapshot, end: _Snapshot) -> Decomposition:
    async with http.get(base_url + "/api/stats") as response:
        sources = [source_id for source_id, source in (await response.json())["sources"].items()
                   if source.get("kind") == "video"]
    await pool.hide(sources)
    paused = await _phase(http, base_url, pid, publishers, pool)
    for publisher in publishers:
        publisher.silence()
    idle = await _phase(http, base_url, pid, publishers, pool)
    full_cpu, paused_cpu, idle_cpu = _cpu_rate(start, end), _cpu_rate(*paused), _cpu_rate(*idle)
    forwarded = _rate(start, end, "rtp_packets_out") - _rate(*paused, "rtp_packets_out")
    ingested = _rate(*paused, "rtp_packets_in")
    return Decomposition(
        forwarded_us=(full_cpu - paused_cpu) * 1e6 / forwarded if forwarded > 0 else math.nan,
        ingested_us=(paused_cpu - idle_cpu) * 1e6 / ingested if ingested > 0 else math.nan,
        idle_pct=100 * idle_cpu,
    )


def _ratios(start: _Snapshot, end: _Snapshot) -> dict[str, float]:
    """The headline figures of one span between two snapshots."""
    span = end.at - start.at
    cpu = end.sfu_runtime - start.sfu_runtime
    packets_in = end.counters["rtp_packets_in"] - start.counters["rtp_packets_in"]
    packets_out = end.counters["rtp_packets_out"] - start.counters["rtp_packets_out"]
    delivered = sum(end.delivered) - sum(start.delivered)
    return {
        "seconds": round(span, 3),
        "sfu_cpu_us_per_forwarded_packet": cpu * 1e6 / packets_out if packets_out else math.nan,
        "sfu_cpu_us_per_ingested_packet": cpu * 1e6 / packets_in if packets_in else math.nan,
        "forwarded_pps": packets_out / span,
        "ingested_pps": packets_in / span,
        "sfu_cpu_pct": 100 * cpu / span,
        "delivered_pps": delivered / span,
        "client_cpu_us_per_received_packet": (
            (end.client.cpu - start.client.cpu) * 1e6 / delivered if delivered else math.nan),
        "client_cpu_pct": 100 * (end.client.cpu - start.client.cpu) / span,
    }


def _ingress_loss_pct(start: _Snapshot, end: _Snapshot) -> float:
    received = end.ingress[0] - start.ingress[0]
    expected = end.ingress[1] - start.ingress[1]
    if expected <= 0:
        return math.nan
    return 100 * max(0, expected - received) / expected


def _median(samples: list[dict[str, float]], key: str) -> float:
    values = [s[key] for s in samples if math.isfinite(s[key])]
    return statistics.median(values) if values else math.nan


def _result(options: ForwardOptions, snapshots: list[_Snapshot], rss: float,
            env: dict[str, Any], warmup: tuple[float, bool, int, int]) -> ForwardResult:
    start, end = snapshots[0], snapshots[-1]
    samples = [_ratios(a, b) for a, b in itertools.pairwise(snapshots)]
    per_second = [s["delivered_pps"] for s in samples]
    window = end.at - start.at
    delta = {k: end.counters.get(k, 0) - start.counters.get(k, 0) for k in end.counters}
    packets_in, packets_out = delta["rtp_packets_in"], delta["rtp_packets_out"]
    # user/system: tick-sampled split, for information; cpu: the scheduler's exact runtime
    user, system = end.sfu_user - start.sfu_user, end.sfu_system - start.sfu_system
    cpu = end.sfu_runtime - start.sfu_runtime
    readers = options.subscribers - options.sinks
    delivered = [b - a for a, b in zip(start.delivered, end.delivered, strict=True)][:readers]
    cores: dict[int, dict[str, float]] = {}
    for core, (busy, steal, total) in end.cores.items():
        busy0, steal0, total0 = start.cores.get(core, (busy, steal, total))
        span = max(1, total - total0)
        cores[core] = {"busy_percent": round(100 * (busy - busy0) / span, 1),
                       "steal_percent": round(100 * (steal - steal0) / span, 1)}
    sfu_core = cores.get(options.server_cpu) if options.pin else None
    other_load = (max(0.0, sfu_core["busy_percent"] - 100 * cpu / window)
                  if sfu_core is not None else float("nan"))
    media = f"VP8 {options.width}x{options.height}@{options.fps}"
    if options.audio:
        media += " + Opus"
    return ForwardResult(
        command=options.command(),
        sfu_cpu_us_per_forwarded_packet=_median(samples, "sfu_cpu_us_per_forwarded_packet"),
        sfu_cpu_us_per_ingested_packet=_median(samples, "sfu_cpu_us_per_ingested_packet"),
        forwarded_pps=_median(samples, "forwarded_pps"),
        ingested_pps=_median(samples, "ingested_pps"),
        loss_pct=100 * max(0, end.client.lost - start.client.lost) / max(
            1, end.client.expected - start.client.expected),
        sfu_cpu_pct=_median(samples, "sfu_cpu_pct"),
        client_cpu_us_per_received_packet=_median(samples, "client_cpu_us_per_received_packet"),
        client_cpu_pct=_median(samples, "client_cpu_pct"),
        ingress_loss_pct=_ingress_loss_pct(start, end),
        publishers=options.publishers,
        subscribers=options.subscribers,
        sinks=options.sinks,
        videos_paused=end.client.paused - start.client.paused,
        media=media,
        warmup_s=round(warmup[0], 2),
        bitrate_settled=warmup[1],
        encoder_target_bps_start=warmup[2],
        encoder_target_bps_end=warmup[3],
        window_s=round(window, 3),
        packets_in=packets_in,
        packets_out=packets_out,
        bytes_in=delta["rtp_bytes_in"],
        bytes_out=delta["rtp_bytes_out"],
        in_pps=packets_in / window,
        out_pps=packets_out / window,
        in_mbps=delta["rtp_bytes_in"] * 8 / window / 1e6,
        sfu_cpu_s=round(cpu, 3),
        sfu_user_s=round(user, 3),
        sfu_system_s=round(system, 3),
        sfu_cpu_percent=100 * cpu / window,
        us_per_packet_out=cpu * 1e6 / packets_out if packets_out else float("nan"),
        us_per_packet_in=cpu * 1e6 / packets_in if packets_in else float("nan"),
        delivered=sum(delivered),
        delivered_per_subscriber_min=min(delivered),
        delivered_per_subscriber_max=max(delivered),
        # per reading subscriber: sinks' packets are forwarded but not counted as delivered
        delivery_ratio=(sum(delivered) / (packets_out * readers / options.subscribers)
                        if packets_out else float("nan")),
        delivered_pps_min=min(per_second, default=float("nan")),
        delivered_pps_max=max(per_second, default=float("nan")),
        publisher_packets_sent=end.published - start.published,
        generator_cpu_percent=100 * (end.generator_cpu - start.generator_cpu) / window,
        sfu_rss_mb=round(rss, 1),
        samples=samples,
        cores=cores,
        other_load_on_sfu_core_percent=round(other_load, 1),
        counters_delta={k: delta.get(k, 0) for k in COUNTERS_REPORTED},
        environment=env,
    )


def run_forward(options: ForwardOptions) -> ForwardResult:
    """Run the whole benchmark (server, peers, window, teardown) and return its figures."""
    options.validate()
    original_affinity = os.sched_getaffinity(0)
    log_dir = Path(tempfile.mkdtemp(prefix="visio-bench-"))
    server = _start_server(options, log_dir)
    budget = (options.ready_timeout + options.max_warmup + options.duration + 60
              + 2 * options.subscribers * JOIN_SECONDS)
    try:
        async def bounded() -> ForwardResult:
            return await asyncio.wait_for(_drive(options, server), budget)
        try:
            return uvloop.run(bounded())
        except Exception as exc:
            # A timeout's own message is empty: name it rather than print "RuntimeError: "
            what = str(exc) or f"{type(exc).__name__} after {budget:g} s"
            raise RuntimeError(f"{what} (server log: {server.log_path})") from exc
    finally:
        _stop_server(server)
        if options.pin:
            os.sched_setaffinity(0, original_affinity)


# --------------------------------------------------------------------------- report


def format_report(result: ForwardResult) -> str:
    env = result.environment
    counters = ", ".join(f"{k}={v}" for k, v in result.counters_delta.items() if v)
    rows = [
        ("command", result.command),
        ("media", f"{result.publishers} publisher(s) ({result.media} each) -> "
                  f"{result.subscribers} subscribers"
                  + (f" ({result.sinks} of them kernel sinks)" if result.sinks else "")),
        ("warm-up", f"{result.warmup_s:.1f} s after every subscriber had media"
                    + ("" if result.bitrate_settled else " (encoder bitrate NOT fixed)")),
        ("encoder target", f"{result.encoder_target_bps_start / 1e6:.2f} Mbit/s at the "
                           f"window's start, {result.encoder_target_bps_end / 1e6:.2f} at its end"),
        ("window", f"{result.window_s:.2f} s in {len(result.samples)} sub-windows "
                   "(the lines marked * are their medians)"),
        ("* µs SFU CPU / forwarded packet", f"{result.sfu_cpu_us_per_forwarded_packet:.1f}"),
        ("* µs SFU CPU / ingested packet", f"{result.sfu_cpu_us_per_ingested_packet:.1f}"),
        ("* forwarded / ingested packets/s", f"{result.forwarded_pps:.0f} / "
                                             f"{result.ingested_pps:.0f}"),
        ("* SFU CPU", f"{result.sfu_cpu_pct:.1f} % of one core"),
        ("taken apart (2 more windows)", f"{result.sfu_marginal_us_per_forwarded_packet:.1f} µs "
         f"per more forwarded packet, {result.sfu_marginal_us_per_ingested_packet:.1f} µs per "
         f"more ingested packet, {result.sfu_idle_cpu_pct:.1f} % of a core idle"),
        ("loss", f"{result.loss_pct:.2f} % at the subscribers (sequence gaps), "
                 f"{result.ingress_loss_pct:.2f} % publishers -> SFU"
                 + (f"; video paused {result.videos_paused} time(s)" if result.videos_paused
                    else "")),
        ("* light client CPU", f"{result.client_cpu_us_per_received_packet:.1f} µs / received "
                               f"packet, {result.client_cpu_pct:.1f} % of one core"),
        ("packets in", f"{result.packets_in}  ({result.in_pps:.0f}/s, "
                       f"{result.in_mbps:.2f} Mbit/s)"),
        ("packets out", f"{result.packets_out}  ({result.out_pps:.0f}/s)"),
        ("SFU CPU", f"{result.sfu_cpu_s:.2f} s = {result.sfu_cpu_percent:.1f} % of one core "
                    f"(tick-sampled: user {result.sfu_user_s:.2f} s, "
                    f"system {result.sfu_system_s:.2f} s)"),
        ("µs CPU / forwarded packet", f"{result.us_per_packet_out:.1f} (whole window)"),
        ("µs CPU / ingested packet", f"{result.us_per_packet_in:.1f} (whole window)"),
        ("delivered to subscribers", f"{result.delivered}  ({100 * result.delivery_ratio:.1f} % "
                                     f"of packets out; per subscriber "
                                     f"{result.delivered_per_subscriber_min}-"
                                     f"{result.delivered_per_subscriber_max})"),
        ("delivery rate, sub-windows", f"{result.delivered_pps_min:.0f}-"
                                       f"{result.delivered_pps_max:.0f} packets/s"),
        ("publisher packets sent", str(result.publisher_packets_sent)),
        ("load generator CPU", f"{result.generator_cpu_percent:.1f} % of one core"),
        ("SFU RSS at end", f"{result.sfu_rss_mb:.1f} MB"),
        ("SFU counters (window)", counters or "no errors, NACKs, PLIs or drops"),
        ("cores", f"SFU {env.get('sfu_cpus')}, load generator {env.get('generator_cpus')} "
                  f"of {env.get('nproc')} ({env.get('cpu_model')})"),
        ("core load in the window", "; ".join(
            f"cpu{core} busy {v['busy_percent']:.1f} %, steal {v['steal_percent']:.1f} %"
            for core, v in sorted(result.cores.items()))),
        ("other load on SFU core", f"{result.other_load_on_sfu_core_percent:.1f} %"
         + (" (NOT quiet: the figures above are perturbed; rerun on an idle machine)"
            if result.other_load_on_sfu_core_percent > QUIET_THRESHOLD else "")),
        ("versions", f"visio {env.get('revision')}, python {env.get('python')}, "
                     f"aiortc {env.get('aiortc')}, uvloop {env.get('uvloop')}, av {env.get('av')}"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def result_json(result: ForwardResult) -> str:
    return json.dumps(result.as_dict(), indent=2)
