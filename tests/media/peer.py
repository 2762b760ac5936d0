"""A real aiortc participant for tests: publishes synthetic media, decodes what it receives.

It speaks the real signaling protocol, runs real ICE/DTLS/SRTP over UDP on
127.0.0.1, encodes with libvpx and decodes every received video frame, so a
test can assert on decoded resolutions and frame counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaStreamError
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from av import VideoFrame

from loadtest.signaling_client import SignalingClient
from loadtest.twcc_feedback import TransportFeedbackGenerator
from sfu.aiortc_bridge import IceSettings, configure_aiortc, pin_ice_addresses
from sfu.rtp import MalformedPacket, parse_header
from sfu.twcc import TRANSPORT_CC_URI, build_feedback_packet

LOOPBACK = IceSettings("127.0.0.1", "127.0.0.1")


class PatternTrack(VideoStreamTrack):
    """A moving test pattern at a fixed size and rate; counts the frames it produced."""

    def __init__(self, width: int, height: int, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.frames_sent = 0
        self._start: float | None = None
        base = np.zeros((height, width, 3), dtype=np.uint8)
        base[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        base[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
        self._frames = [np.roll(base, shift * 8, axis=1) for shift in range(fps)]

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.frames_sent / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = self._frames[self.frames_sent % len(self._frames)]
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(self.frames_sent * 90000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.frames_sent += 1
        return frame


@dataclass
class Received:
    """What one subscribed m-line delivered after decoding."""

    kind: str
    source_id: str | None = None
    participant_id: str | None = None
    frames: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, frame height)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[],
                                              bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


class TestPeer:
    """One participant driven through the signaling protocol."""

    __test__ = False  # not a pytest class

    def __init__(self, base_url: str, room: str, name: str, *, size: tuple[int, int] = (320, 240),
                 fps: int = 15, receive_loss: float = 0.0, seed: int = 1,
                 transport_feedback: bool = False) -> None:
        self.signaling = SignalingClient(base_url)
        self.room, self.name = room, name
        self.size, self.fps = size, fps
        self.participant_id: str | None = None
        self.video: PatternTrack | None = None
        self.received: dict[str, Received] = {}  # by subscribe mid
        self.events: list[dict[str, Any]] = []
        self.tracks_map: dict[str, Any] = {}
        self.joined_at: float | None = None
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.dropped = 0
        self._receive_loss = receive_loss
        self._random = random.Random(seed)
        self._tasks: list[asyncio.Task[Any]] = []
        self._changed = asyncio.Event()
        self.subscribe_answers = 0
        # Test hooks: rewrite the subscribe offer / answer (e.g. to route media via a relay).
        self.rewrite_offer: Callable[[str], str] = lambda sdp: sdp
        self.rewrite_answer: Callable[[str], str] = lambda sdp: sdp
        self._sent_ntp: list[int] = []
        # Browser-like transport-cc feedback (aiortc itself only sends REMB).
        self._transport_feedback = TransportFeedbackGenerator() if transport_feedback else None
        if transport_feedback:
            configure_aiortc()  # let this process's aiortc answer transport-cc

    async def join(self) -> dict[str, Any]:
        await self.signaling.connect()
        self.joined_at = time.monotonic()
        joined = await self.signaling.request(
            {"type": "join", "v": 1, "room": self.room, "name": self.name})
        self.participant_id = joined["participant_id"]
        self._tasks.append(asyncio.ensure_future(self._dispatch()))
        return joined

    async def publish(self, audio: bool = True, video: bool = True,
                      video_codec: str = "video/VP8",
                      audio_track: MediaStreamTrack | None = None) -> None:
        pc = self.publish_pc = new_pc()
        if audio:
            pc.addTransceiver(audio_track or AudioStreamTrack(), direction="sendonly")
        if video:
            self.video = PatternTrack(*self.size, fps=self.fps)
            transceiver = pc.addTransceiver(self.video, direction="sendonly")
            transceiver.setCodecPreferences([
                c for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in (video_codec.lower(), "video/rtx")])
        pin_ice_addresses(pc, LOOPBACK)
        await pc.setLocalDescription(await pc.createOffer())
        self._record_sender_reports(pc)
        reply = await self.signaling.request(
            {"type": "publish_offer", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    def _record_sender_reports(self, pc: RTCPeerConnection) -> None:
        """Remember the NTP time of every SR this peer sends (to check the SFU's translation)."""
        dtls = pc.getTransceivers()[0].sender.transport
        original = dtls._send_rtp

        async def send(data: bytes) -> None:
            if len(data) >= 16 and data[1] == 200:
                self._sent_ntp.append(int.from_bytes(data[8:16], "big"))
            await original(data)

        dtls._send_rtp = send

    def sent_sender_report_ntp(self) -> list[int]:
        return list(self._sent_ntp)

    async def _dispatch(self) -> None:
        while True:
            event = await self.signaling.events.get()
            event["_at"] = time.monotonic()
            self.events.append(event)
            if event["type"] == "subscribe_offer":
                await self._answer(event)
            self._changed.set()

    async def _answer(self, offer: dict[str, Any]) -> None:
        if self.subscribe_pc is None:
            self.subscribe_pc = new_pc()
            self.subscribe_pc.on("track", self._on_track)
        pc = self.subscribe_pc
        self.tracks_map = offer["tracks"]
        for mid, info in offer["tracks"].items():
            if mid in self.received and info:
                self.received[mid].source_id = info["source_id"]
                self.received[mid].participant_id = info["participant_id"]
        await pc.setRemoteDescription(
            RTCSessionDescription(self.rewrite_offer(offer["sdp"]), "offer"))
        if self._receive_loss:
            self._inject_loss(pc)
        if self._transport_feedback is not None:
            self._report_arrivals(pc, offer["sdp"])
        pin_ice_addresses(pc, LOOPBACK)
        await pc.setLocalDescription(await pc.createAnswer())
        await self.signaling.send({"type": "subscribe_answer", "revision": offer["revision"],
                                   "sdp": self.rewrite_answer(pc.localDescription.sdp)})
        self.subscribe_answers += 1

    def _report_arrivals(self, pc: RTCPeerConnection, offer: str) -> None:
        """Note each packet's transport-wide sequence number and send feedback every 50 ms."""
        generator = self._transport_feedback
        dtls = pc.getTransceivers()[0].receiver.transport
        match = re.search(rf"^a=extmap:(\d+) {re.escape(TRANSPORT_CC_URI)}", offer, re.MULTILINE)
        if generator is None or match is None or getattr(dtls, "_test_twcc", False):
            return
        extension_id = int(match.group(1))
        original = dtls._handle_rtp_data

        async def note(data: bytes, arrival_time_ms: int) -> None:
            try:
                value = parse_header(data).extensions.get(extension_id)
            except MalformedPacket:
                value = None
            if value is not None and len(value) == 2:
                generator.on_packet(int.from_bytes(value, "big"), time.monotonic_ns() // 1000)
            await original(data, arrival_time_ms)

        async def send_reports() -> None:
            while True:
                await asyncio.sleep(0.05)
                fci = generator.report()
                if fci is not None:
                    with contextlib.suppress(ConnectionError):
                        await dtls._send_rtp(build_feedback_packet(1, 0, fci))

        dtls._handle_rtp_data = note
        dtls._test_twcc = True
        self._tasks.append(asyncio.ensure_future(send_reports()))

    def _inject_loss(self, pc: RTCPeerConnection) -> None:
        """Drop a share of incoming RTP before aiortc sees it (netem is not available here)."""
        dtls = pc.getTransceivers()[0].receiver.transport
        if getattr(dtls, "_test_lossy", False):
            return
        original = dtls._handle_rtp_data

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            if self._random.random() < self._receive_loss:
                self.dropped += 1
                return
            await original(data, arrival_time_ms)

        dtls._handle_rtp_data = lossy
        dtls._test_lossy = True

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.subscribe_pc.getTransceivers()  # type: ignore[union-attr]
                   if t.receiver.track is track)
        info = self.tracks_map.get(mid) or {}
        record = self.received[mid] = Received(kind=track.kind, source_id=info.get("source_id"),
                                               participant_id=info.get("participant_id"))
        if track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._consume(track, record)))

    async def _consume(self, track: MediaStreamTrack, record: Received) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                record.frames += 1
                record.sizes.add((frame.width, frame.height))
                if len(record.history) < 100_000:
                    record.history.append((now, frame.height))
                if record.first_frame_at is None:
                    record.first_frame_at = now
                record.last_frame_at = now
        except MediaStreamError:
            pass

    def video_from(self, participant_id: str) -> Received | None:
        for record in self.received.values():
            if record.kind == "video" and record.participant_id == participant_id:
                return record
        return None

    async def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await self.signaling.send({"type": "leave"})
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        await self.signaling.close()


async def streaming_pair(base_url: str, room: str) -> tuple[TestPeer, TestPeer]:
    """Two participants that publish and already decode each other's video."""
    a = TestPeer(base_url, room, "alice", size=(320, 240))
    b = TestPeer(base_url, room, "bob", size=(256, 192))
    for peer in (a, b):
        await peer.join()
    for peer in (a, b):
        await peer.publish()
    await a.wait_for(lambda: (a.video_from(b.participant_id or "") or Received("")).frames > 5,
                     20, "video from bob")
    await b.wait_for(lambda: (b.video_from(a.participant_id or "") or Received("")).frames > 5,
                     20, "video from alice")
    return a, b


async def assert_still_forwarding(a: TestPeer, b: TestPeer, frames: int = 10) -> None:
    """Both directions of a pair keep delivering decodable frames."""
    for receiver, sender in ((a, b), (b, a)):
        record = receiver.video_from(sender.participant_id or "")
        assert record is not None
        before = record.frames
        await receiver.wait_for(
            lambda record=record, before=before: record.frames >= before + frames,
            10, f"{frames} more frames from {sender.name}")
