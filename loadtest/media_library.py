"""Pre-encoded media for light participants: encode once with PyAV, loop the packets.

A load-test participant must not spend its core on libvpx. A few seconds of
VP8 (a moving gradient with noise, so the encoder really uses its bitrate)
and Opus are encoded once per process (and cached on disk), then replayed by
tracks whose ``recv`` returns ``av.Packet``: aiortc's sender only
repacketizes those (``Encoder.pack``), it never encodes them.

Simulcast is not possible from aiortc (one encoding per sender): a light
participant publishes one layer, at the size chosen for it.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from sfu.aiortc_bridge import override

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
OPUS_FRAME_SAMPLES = 960  # 20 ms
VIDEO_PRESETS: dict[str, tuple[int, int, int]] = {  # name -> width, height, bitrate (bit/s)
    "180p": (320, 180, 250_000),
    "360p": (640, 360, 700_000),
    "720p": (1280, 720, 1_500_000),
}
CACHE_VERSION = 1


@dataclass(frozen=True)
class EncodedClip:
    """Encoded frames in decoding order; ``keyframes`` are indexes into ``frames``."""

    frames: tuple[bytes, ...]
    keyframes: tuple[int, ...]
    frame_ticks: int  # clock ticks between frames
    time_base: fractions.Fraction

    @property
    def bitrate(self) -> float:
        seconds = len(self.frames) * self.frame_ticks * float(self.time_base)
        return sum(len(f) for f in self.frames) * 8 / seconds if seconds else 0.0


def _cache_dir() -> Path:
    base = os.environ.get("VISIO_LOADTEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "visio-loadtest")
    return Path(base)


def _cached(key: str, build: Callable[[], EncodedClip]) -> EncodedClip:
    digest = hashlib.sha1(f"{CACHE_VERSION}:{key}:{av.__version__}".encode()).hexdigest()[:16]
    path = _cache_dir() / f"{digest}.pickle"
    try:
        with path.open("rb") as handle:
            loaded = pickle.load(handle)
        if isinstance(loaded, EncodedClip):
            return loaded
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        pass
    clip = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            pickle.dump(clip, handle)
        temporary.replace(path)  # atomic: concurrent locust workers may race here
    except OSError:
        pass
    return clip


@lru_cache(maxsize=8)
def vp8_clip(width: int, height: int, bitrate: int, fps: int = 30, seconds: float = 4.0,
             keyframe_interval: int = 60) -> EncodedClip:
    """``seconds`` of VP8 at a constant bitrate, a keyframe every ``keyframe_interval`` frames."""

    def build() -> EncodedClip:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, fps)
        codec.framerate = fractions.Fraction(fps, 1)
        codec.bit_rate = bitrate
        codec.gop_size = keyframe_interval
        codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                         "minrate": str(bitrate), "maxrate": str(bitrate),
                         "b": str(bitrate), "error-resilient": "1"}
        rng = np.random.default_rng(11)
        rows = height * 3 // 2
        base = np.empty((rows, width), dtype=np.int16)
        base[:height] = np.linspace(16, 235, width, dtype=np.int16)[None, :]
        base[height:] = 128
        frames: list[bytes] = []
        keyframes: list[int] = []
        count = max(1, round(seconds * fps))
        images = []
        for index in range(min(count, 16)):
            image = np.roll(base, index * 7, axis=1)
            image[:height] += rng.integers(-14, 15, size=(height, width), dtype=np.int16)
            images.append(np.clip(image, 0, 255).astype(np.uint8))

        def collect(packets: list[av.Packet[Any]]) -> None:
            for packet in packets:
                if packet.is_keyframe:
                    keyframes.append(len(frames))
                frames.append(bytes(packet))

        for index in range(count):
            frame = av.VideoFrame.from_ndarray(images[index % len(images)], format="yuv420p")
            frame.pts = index
            frame.time_base = codec.time_base
            if index % keyframe_interval == 0:
                frame.pict_type = av.video.frame.PictureType.I
            collect(codec.encode(frame))
        collect(codec.encode(None))
        if not keyframes or keyframes[0] != 0:
            raise RuntimeError("the VP8 clip does not start with a keyframe")
        return EncodedClip(tuple(frames), tuple(keyframes), VIDEO_CLOCK // fps,
                           fractions.Fraction(1, VIDEO_CLOCK))

    return _cached(f"vp8:{width}x{height}:{bitrate}:{fps}:{seconds}:{keyframe_interval}", build)


@lru_cache(maxsize=2)
def opus_clip(seconds: float = 2.0, bitrate: int = 32_000) -> EncodedClip:
    """``seconds`` of Opus (a 440 Hz tone, 20 ms frames, mono 48 kHz)."""

    def build() -> EncodedClip:
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = AUDIO_CLOCK
        codec.layout = "mono"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = fractions.Fraction(1, AUDIO_CLOCK)
        frames: list[bytes] = []
        count = max(1, round(seconds * AUDIO_CLOCK / OPUS_FRAME_SAMPLES))
        for index in range(count):
            t = (np.arange(OPUS_FRAME_SAMPLES) + index * OPUS_FRAME_SAMPLES) / AUDIO_CLOCK
            samples = (np.sin(2 * np.pi * 440 * t) * 6000).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = AUDIO_CLOCK
            frame.pts = index * OPUS_FRAME_SAMPLES
            frame.time_base = codec.time_base
            frames.extend(bytes(p) for p in codec.encode(frame))
        frames.extend(bytes(p) for p in codec.encode(None))
        return EncodedClip(tuple(frames), (0,), OPUS_FRAME_SAMPLES,
                           fractions.Fraction(1, AUDIO_CLOCK))

    return _cached(f"opus:{seconds}:{bitrate}", build)


class ReplayTrack(MediaStreamTrack):
    """Returns the clip's packets in a loop, paced in real time, as ``av.Packet``.

    ``request_keyframe()`` (wired to the sender's PLI/FIR handling) makes the
    next packet the clip's next keyframe, so a new subscriber waits one frame,
    not a whole keyframe interval.
    """

    def __init__(self, kind: str, clip: EncodedClip) -> None:
        super().__init__()
        self.kind = kind
        self.clip = clip
        self.packets_sent = 0
        self.keyframes_requested = 0
        self._index = 0
        self._pts = 0
        self._started: float | None = None
        self._jump = False
        self._period = clip.frame_ticks * float(clip.time_base)

    def request_keyframe(self) -> None:
        self.keyframes_requested += 1
        self._jump = True

    async def recv(self) -> av.Packet[Any]:
        if self._started is None:
            self._started = time.monotonic()
        delay = self._started + self.packets_sent * self._period - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -1.0:  # fell more than a second behind (overload): do not burst
            self._started = time.monotonic() - self.packets_sent * self._period
        clip = self.clip
        if self._jump:
            self._jump = False
            following = [k for k in clip.keyframes if k > self._index]
            self._index = following[0] if following else 0
        packet = av.Packet(clip.frames[self._index])
        packet.pts = self._pts
        packet.time_base = clip.time_base
        self._pts += clip.frame_ticks
        self._index = (self._index + 1) % len(clip.frames)
        self.packets_sent += 1
        return packet


def handle_publisher_rtcp(sender: RTCRtpSender, track: MediaStreamTrack, *,
                          ignore_remb: bool = False) -> None:
    """Hook a video sender's RTCP for a load-test publisher.

    PLI and FIR make a ``ReplayTrack`` jump to its clip's next
    keyframe: aiortc's own handling only tells its encoder, which replayed
    packets never pass through. ``ignore_remb`` drops the SFU's REMB (PSFB
    15), so a live encoder keeps the bitrate it was set to.
    """
    original = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt == RTCP_PSFB_APP and ignore_remb:
                return
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) and isinstance(track, ReplayTrack):
                track.request_keyframe()
        await original(packet)  # PLI, NACK, receiver reports

    override(sender, "_handle_rtcp_packet", handle_rtcp_packet)
