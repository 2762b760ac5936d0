"""A light WebRTC participant for load tests: real protocol and transport, no codec work.

It joins through the signaling protocol (docs/protocol.md), completes real
ICE / DTLS / SRTP with the SFU through aiortc, publishes pre-encoded VP8 and
Opus (``loadtest.media_library``: packets are looped, never encoded live) and
subscribes *without decoding*: a hook on the subscribe DTLS transport reads
each decrypted packet's header and drops it. Per SSRC it keeps

* packets, bytes, loss (sequence gaps) and RFC 3550 jitter, kept by aiortc's
  own ``StreamStatistics`` registered with the m-line's receiver, so aiortc's
  RTCP loop sends receiver reports for them as a browser would;
* completed frames (marker bit), freezes (no completed frame for > 500 ms)
  and the received resolution (VP8 keyframe headers);
* NACKs for gaps (aiortc's ``NackGenerator``) and transport-cc feedback
  (``loadtest.twcc_feedback``) when the SFU offers transport-cc.

Join milestones, in seconds from the start of ``run``: WebSocket open,
joined, ICE connected, first RTP, first keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pylibsrtp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtcpPsfbPacket, RtpPacket

from loadtest.media_library import VIDEO_PRESETS, ReplayTrack, opus_clip, vp8_clip
from loadtest.signaling_client import SignalingClient
from loadtest.twcc_feedback import TransportFeedbackGenerator
from sfu.aiortc_bridge import (
    IceSettings,
    configure_aiortc,
    new_peer_connection,
    override,
    pin_ice_addresses,
)
from sfu.twcc import TRANSPORT_CC_URI, build_feedback_packet
from sfu.vp8 import keyframe_size, parse_descriptor

LOOPBACK = IceSettings("127.0.0.1", "127.0.0.1")
FREEZE_GAP = 0.5  # s without a completed video frame
FEEDBACK_INTERVAL = 0.05  # s between transport-cc reports
NACK_INTERVAL = 0.02  # s: at most one NACK per stream this often
MILESTONES = ("ws_open", "joined", "ice_connected", "first_rtp", "first_keyframe")


@dataclass
class ParticipantConfig:
    base_url: str
    room: str
    name: str
    publish: bool = True
    video: bool = True
    audio: bool = True
    video_preset: str = "360p"
    fps: int = 30
    ice: IceSettings = LOOPBACK
    join_timeout: float = 20.0
    direct_receive: bool = True  # after the handshake, read SRTP off the socket (see below)


_FIXED_HEADER = struct.Struct("!BBHII")


def _one_byte_extension(data: bytes, pos: int, end: int, wanted: int) -> int:
    """The 2-byte value of one-byte header extension ``wanted`` (RFC 8285), or -1."""
    end = min(end, len(data))
    if data[pos - 4:pos - 2] != b"\xbe\xde":
        return -1
    while pos < end:
        byte = data[pos]
        if byte == 0:
            pos += 1
            continue
        ext_id, length = byte >> 4, (byte & 0x0F) + 1
        if ext_id == 15:
            return -1
        if ext_id == wanted:
            return int.from_bytes(data[pos + 1:pos + 3], "big") if length == 2 else -1
        pos += 1 + length
    return -1


class _Seq:
    """What StreamStatistics / NackGenerator read from a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self, sequence_number: int, timestamp: int) -> None:
        self.sequence_number = sequence_number
        self.timestamp = timestamp


@dataclass
class StreamStats:
    """One received SSRC."""

    ssrc: int
    kind: str
    mid: str | None
    clock_rate: int
    rtx: bool = False
    packets: int = 0
    octets: int = 0
    frames: int = 0
    keyframes: int = 0
    freezes: int = 0
    freeze_seconds: float = 0.0
    first_at: float | None = None
    last_frame_at: float | None = None
    resolution: tuple[int, int] | None = None
    nacks_sent: int = 0
    statistics: StreamStatistics | None = None
    nack: NackGenerator | None = None
    last_nack_at: float = 0.0
    vp8: bool = False
    holder: _Seq = field(default_factory=lambda: _Seq(0, 0))

    @property
    def expected(self) -> int:
        if self.statistics is None or self.statistics.base_seq is None:
            return 0
        return int(self.statistics.packets_expected)

    @property
    def lost(self) -> int:
        return max(0, self.expected - (self.statistics.packets_received
                                       if self.statistics is not None else 0))

    @property
    def jitter_ms(self) -> float:
        if self.statistics is None or not self.clock_rate:
            return 0.0
        return 1000.0 * self.statistics.jitter / self.clock_rate


@dataclass
class ParticipantReport:
    """A snapshot of one participant, safe to hand to another thread."""

    name: str
    milestones: dict[str, float]
    error: str | None
    streams: list[dict[str, Any]] = field(default_factory=list)
    packets: int = 0
    octets: int = 0
    paused: int = 0


def _sdp_media(sdp: str) -> tuple[dict[int, tuple[str, int]], dict[int, str],
                                   dict[str, str], int | None, set[int]]:
    """From an SDP: payload type -> (codec, clock), SSRC -> mid, mid -> kind,
    the transport-cc extension id, and the RTX payload types."""
    codecs: dict[int, tuple[str, int]] = {}
    ssrc_mid: dict[int, str] = {}
    mid_kind: dict[str, str] = {}
    rtx: set[int] = set()
    twcc_id: int | None = None
    kind = ""
    mid: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            kind, mid = line[2:].split(" ", 1)[0], None
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
            mid_kind[mid] = kind
        elif line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            name, _, clock = rest.partition("/")
            codecs[int(pt)] = (name.lower(), int(clock.split("/")[0] or 0))
            if name.lower() == "rtx":
                rtx.add(int(pt))
        elif line.startswith("a=ssrc:") and mid is not None:
            ssrc_mid[int(line[7:].split(" ", 1)[0])] = mid
        elif TRANSPORT_CC_URI in line and line.startswith("a=extmap:"):
            twcc_id = int(re.split(r"[ /]", line[9:], maxsplit=1)[0])
    return codecs, ssrc_mid, mid_kind, twcc_id, rtx


class LightParticipant:
    """One participant; ``run()`` joins and stays until ``stop()``."""

    def __init__(self, config: ParticipantConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.signaling = SignalingClient(config.base_url)
        self.participant_id: str | None = None
        self.milestones: dict[str, float] = {}
        self.error: str | None = None
        self.streams: dict[int, StreamStats] = {}
        self.packets = 0
        self.octets = 0
        self.paused = 0  # source_paused events (the SFU stopped a video for this client)
        self.tracks: list[ReplayTrack] = []
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self._started = 0.0
        self._codecs: dict[int, tuple[str, int]] = {}
        self._ssrc_mid: dict[int, str] = {}
        self._mid_kind: dict[str, str] = {}
        self._rtx_pts: set[int] = set()
        self._twcc_id: int | None = None
        self._feedback = TransportFeedbackGenerator()
        self._tasks: list[asyncio.Task[Any]] = []
        self._hooked: set[int] = set()
        self._dtls: Any = None
        self._direct: asyncio.Task[None] | None = None
        self.direct_packets = 0  # SRTP packets taken straight from the socket
        self._nacks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    def _mark(self, milestone: str) -> None:
        if milestone not in self.milestones:
            self.milestones[milestone] = self._clock() - self._started

    async def start(self) -> None:
        """Connect, join and publish; subscription follows the server's offers."""
        config = self.config
        self._started = self._clock()
        configure_aiortc()  # answer transport-cc as a browser does
        await asyncio.wait_for(self.signaling.connect(), config.join_timeout)
        self._mark("ws_open")
        joined = await self.signaling.request(
            {"type": "join", "v": 1, "room": config.room, "name": config.name},
            timeout=config.join_timeout)
        self.participant_id = joined["participant_id"]
        self._mark("joined")
        self._tasks.append(asyncio.ensure_future(self._dispatch()))
        if config.publish and (config.video or config.audio):
            await self._publish()

    async def _publish(self) -> None:
        config = self.config
        pc = self.publish_pc = new_peer_connection()
        if config.audio:
            self._add_sender(pc, ReplayTrack("audio", opus_clip()))
        if config.video:
            width, height, bitrate = VIDEO_PRESETS[config.video_preset]
            self._add_sender(pc, ReplayTrack("video", vp8_clip(width, height, bitrate,
                                                               config.fps)))
        self._watch_ice(pc)
        pin_ice_addresses(pc, config.ice)
        await pc.setLocalDescription(await pc.createOffer())
        reply = await self.signaling.request({"type": "publish_offer",
                                              "sdp": pc.localDescription.sdp},
                                             timeout=config.join_timeout)
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    def _add_sender(self, pc: RTCPeerConnection, track: ReplayTrack) -> None:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        self.tracks.append(track)
        if track.kind != "video":
            return
        sender = transceiver.sender
        original = sender._handle_rtcp_packet

        async def handle_rtcp_packet(packet: Any) -> None:
            # PLI (PSFB 1) / FIR (PSFB 4): jump to the clip's next keyframe.
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (1, 4):
                track.request_keyframe()
            await original(packet)

        override(sender, "_handle_rtcp_packet", handle_rtcp_packet)

    def _watch_ice(self, pc: RTCPeerConnection) -> None:
        @pc.on("iceconnectionstatechange")
        def changed() -> None:
            if pc.iceConnectionState in ("connected", "completed"):
                self._mark("ice_connected")
            elif pc.iceConnectionState == "failed" and self.error is None:
                self.error = "ice_failed"

    async def _dispatch(self) -> None:
        while True:
            event = await self.signaling.events.get()
            kind = event.get("type")
            try:
                if kind == "subscribe_offer":
                    await self._answer(event)
                elif kind == "source_paused":
                    self.paused += 1
                elif kind == "left":
                    self.error = f"left: {event.get('reason')}"
            except Exception as exc:  # reported as the participant's error
                self.error = f"{type(exc).__name__}: {exc}"

    async def _answer(self, offer: dict[str, Any]) -> None:
        if self.subscribe_pc is None:
            self.subscribe_pc = new_peer_connection()
            self._watch_ice(self.subscribe_pc)
        pc = self.subscribe_pc
        codecs, ssrc_mid, mid_kind, twcc_id, rtx = _sdp_media(offer["sdp"])
        self._codecs.update(codecs)
        self._ssrc_mid.update(ssrc_mid)
        self._mid_kind.update(mid_kind)
        self._rtx_pts |= rtx
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        dtls = pc.getTransceivers()[0].receiver.transport
        if id(dtls) not in self._hooked:
            self._hooked.add(id(dtls))
            override(dtls, "_handle_rtp_data", self._on_rtp)
            self._dtls = dtls
        if twcc_id is not None and self._twcc_id is None:
            self._twcc_id = twcc_id
            self._tasks.append(asyncio.ensure_future(self._send_feedback()))
        if self.config.direct_receive and self._direct is None:
            self._direct = asyncio.ensure_future(self._read_socket_directly(dtls))
            self._tasks.append(self._direct)
        pin_ice_addresses(pc, self.config.ice)
        await pc.setLocalDescription(await pc.createAnswer())
        await self.signaling.send({"type": "subscribe_answer", "revision": offer["revision"],
                                   "sdp": pc.localDescription.sdp})

    # ---------------------------------------------------------------- receive path

    def _new_stream(self, ssrc: int, payload_type: int) -> StreamStats:
        mid = self._ssrc_mid.get(ssrc)
        name, clock_rate = self._codecs.get(payload_type, ("?", 90000))
        kind = self._mid_kind.get(mid or "", "audio" if name == "opus" else "video")
        stream = StreamStats(ssrc, kind, mid, clock_rate, rtx=payload_type in self._rtx_pts,
                             vp8=name == "vp8")
        if not stream.rtx:
            stream.statistics = StreamStatistics(clock_rate)
            if kind == "video":
                stream.nack = NackGenerator()
            receiver = self._receiver_for(mid)
            if receiver is not None:  # aiortc's RR loop reports loss and jitter for it
                receiver._RTCRtpReceiver__remote_streams[ssrc] = stream.statistics
        self.streams[ssrc] = stream
        return stream

    def _receiver_for(self, mid: str | None) -> Any:
        pc = self.subscribe_pc
        if pc is None:
            return None
        transceivers = pc.getTransceivers()
        for transceiver in transceivers:
            if transceiver.mid == mid:
                return transceiver.receiver
        return transceivers[0].receiver if transceivers else None

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        """aiortc's path: called by the DTLS transport with each decrypted packet."""
        self.on_rtp(data)

    def on_rtp(self, data: bytes) -> None:
        """Count one decrypted RTP packet (synchronous: also called from the socket).

        Struct reads only, no per-packet objects: this runs for every packet.
        """
        size = len(data)
        if size < 12:
            return
        first, second, sequence_number, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
        if first >> 6 != 2:
            return
        pos = 12 + 4 * (first & 0x0F)
        extension_start = extension_end = 0
        if first & 0x10:
            if size < pos + 4:
                return
            extension_start = pos + 4
            extension_end = extension_start + 4 * int.from_bytes(data[pos + 2:pos + 4], "big")
            pos = extension_end
        end = size - data[-1] if first & 0x20 else size
        if pos > end:
            return
        now = self._clock()
        self.packets += 1
        self.octets += size
        stream = self.streams.get(ssrc)
        if stream is None:
            stream = self._new_stream(ssrc, second & 0x7F)
            self._mark("first_rtp")
        if stream.first_at is None:
            stream.first_at = now
        stream.packets += 1
        stream.octets += size
        twcc_id = self._twcc_id
        if twcc_id is not None and extension_end:
            value = _one_byte_extension(data, extension_start, extension_end, twcc_id)
            if value >= 0:
                self._feedback.on_packet(value, int(now * 1e6))
        statistics = stream.statistics
        if statistics is None:  # RTX
            return
        holder = stream.holder
        holder.sequence_number = sequence_number
        holder.timestamp = timestamp
        sequence = cast(RtpPacket, holder)
        statistics.add(sequence)
        if stream.kind != "video":
            return
        if (stream.nack is not None and stream.nack.add(sequence)
                and now - stream.last_nack_at >= NACK_INTERVAL):
            stream.last_nack_at = now
            stream.nacks_sent += 1
            task = asyncio.ensure_future(self._send_nack(stream))
            self._nacks.add(task)
            task.add_done_callback(self._nacks.discard)
        # VP8: only a packet that starts partition 0 (S=1, PID=0) can start a keyframe.
        if stream.vp8 and pos < end and data[pos] & 0x17 == 0x10:
            descriptor = parse_descriptor(data, pos, end)
            if descriptor is not None:
                resolution = keyframe_size(data, descriptor, end)
                if resolution is not None:
                    stream.resolution = resolution
                    stream.keyframes += 1
                    self._mark("first_keyframe")
        if second & 0x80:  # marker: the frame is complete
            last = stream.last_frame_at
            if last is not None and now - last > FREEZE_GAP:
                stream.freezes += 1
                stream.freeze_seconds += now - last
            stream.last_frame_at = now
            stream.frames += 1

    async def _read_socket_directly(self, dtls: Any) -> None:
        """After DTLS, take SRTP packets straight from the UDP socket's protocol.

        aiortc's receive path costs 20-45 µs per packet: aioice tries to parse
        every datagram as STUN, queues it, and the DTLS transport's coroutine
        awaits it. Here the socket's ``datagram_received`` (uvloop calls it
        directly) decrypts RTP with the transport's own SRTP session and counts
        it synchronously; everything else (STUN consent checks, DTLS, SRTCP)
        still takes aiortc's path, so ICE and RTCP behave as before.
        """
        while dtls.state != "connected":
            if dtls.state in ("closed", "failed"):
                return
            await asyncio.sleep(0.05)
        srtp = dtls._rx_srtp
        connection = dtls.transport._connection
        count = self.on_rtp

        for protocol in connection._protocols:
            original = protocol.datagram_received

            def datagram_received(data: bytes, addr: Any, original: Any = original) -> None:
                if 127 < data[0] < 192 and not 191 < data[1] < 224:  # SRTP, not SRTCP
                    try:
                        plain = srtp.unprotect(data)
                    except pylibsrtp.Error:
                        return
                    self.direct_packets += 1
                    count(plain)
                else:
                    original(data, addr)

            protocol.datagram_received = datagram_received

    async def _send_nack(self, stream: StreamStats) -> None:
        receiver = self._receiver_for(stream.mid)
        if receiver is None or stream.nack is None or not stream.nack.missing:
            return
        with contextlib.suppress(ConnectionError):
            await receiver._send_rtcp_nack(stream.ssrc, sorted(stream.nack.missing))

    async def _send_feedback(self) -> None:
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            fci = self._feedback.report()
            if fci is not None and self._dtls is not None:
                with contextlib.suppress(ConnectionError):
                    await self._dtls._send_rtp(build_feedback_packet(1, 0, fci))

    # ---------------------------------------------------------------- results

    def report(self) -> ParticipantReport:
        now = self._clock()
        streams = []
        for stream in self.streams.values():
            if stream.rtx:
                continue
            freezes, freeze_s = stream.freezes, stream.freeze_seconds
            if (stream.kind == "video" and stream.last_frame_at is not None
                    and now - stream.last_frame_at > FREEZE_GAP):
                freezes += 1  # frozen right now
                freeze_s += now - stream.last_frame_at
            streams.append({
                "ssrc": stream.ssrc, "kind": stream.kind, "mid": stream.mid,
                "packets": stream.packets, "octets": stream.octets,
                "expected": stream.expected, "lost": stream.lost,
                "jitter_ms": stream.jitter_ms, "frames": stream.frames,
                "keyframes": stream.keyframes, "freezes": freezes,
                "freeze_seconds": freeze_s, "nacks_sent": stream.nacks_sent,
                "resolution": stream.resolution,
                "seconds": now - stream.first_at if stream.first_at is not None else 0.0,
            })
        return ParticipantReport(self.config.name, dict(self.milestones), self.error,
                                 streams, self.packets, self.octets, self.paused)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.signaling.send({"type": "leave"}), 2)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.signaling.close(), 5)
