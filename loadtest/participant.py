"""A light WebRTC participant for load tests: real protocol and transport, no codec work.

It joins through the signaling protocol (docs/protocol.md), completes real
ICE / DTLS / SRTP with the SFU through aiortc, publishes pre-encoded VP8 and
Opus (``loadtest.media_library``: packets are looped, never encoded live) and
subscribes *without decoding*: after the handshake it reads SRTP off its
socket and counts each packet from its header (``loadtest.rtp_receive``).
Per SSRC it keeps

* packets, bytes, loss (sequence gaps) and RFC 3550 jitter;
* completed frames (marker bit), freezes (no completed frame for > 500 ms)
  and the received resolution (VP8 keyframe headers);

and it sends what a browser sends, from one timer per event loop: receiver
reports every second (with LSR/DLSR from the SFU's sender reports), NACKs
for gaps, and transport-cc feedback (``loadtest.twcc_feedback``) every
100 ms when the SFU offers transport-cc.

Join milestones, in seconds from the start of ``run``: WebSocket open,
joined, ICE connected, first RTP, first keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

from loadtest.kernel_sink import drop_media_in_kernel
from loadtest.media_library import (
    VIDEO_PRESETS,
    ReplayTrack,
    handle_publisher_rtcp,
    opus_clip,
    vp8_clip,
)
from loadtest.rtp_receive import FREEZE_GAP, ReceivedStream, RtpCounter, no_loss_listener
from loadtest.signaling_client import SignalingClient
from loadtest.srtp_socket import DirectReceive, SocketReader
from sfu.aiortc_bridge import (
    IceSettings,
    configure_aiortc,
    new_peer_connection,
    override,
    pin_ice_addresses,
    without_periodic_rtcp,
)
from sfu.ticker import Ticker
from sfu.twcc import TRANSPORT_CC_URI, build_feedback_packet

LOOPBACK = IceSettings("127.0.0.1", "127.0.0.1")
TICK = 0.025  # s between two runs of the process's RTCP timer (NACKs)
# transport-cc feedback every 100 ms: the default send interval of libwebrtc's
# RemoteEstimatorProxy (which adapts it between 50 and 250 ms to the bitrate).
FEEDBACK_TICKS = 4
REPORT_TICKS = 40  # receiver reports every second, as browsers send them for video
DTLS_CONNECTED = DtlsState.CONNECTED
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
    # Negotiate transport-cc as a browser does (the SFU then stamps every packet and runs its
    # send-side estimator for this participant); off: the SFU falls back to REMB.
    transport_cc: bool = True


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


def _ignore_result(task: asyncio.Task[None]) -> None:
    """RTCP sent while the transport closes fails: nothing to do about it."""
    if not task.cancelled():
        task.exception()


def without_transport_cc(sdp: str) -> str:
    """``sdp`` without transport-cc: its feedback lines and its header extension."""
    return "".join(line for line in sdp.splitlines(keepends=True)
                   if not (line.startswith("a=rtcp-fb:") and line.rstrip().endswith(
                       " transport-cc"))
                   and not (line.startswith("a=extmap:") and TRANSPORT_CC_URI in line))


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
        self._counter = RtpCounter(self._new_stream, self._mark, clock)
        self.streams = self._counter.streams
        self.paused = 0  # source_paused events (the SFU stopped a video for this client)
        self.tracks: list[ReplayTrack] = []
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self._started = 0.0
        self._codecs: dict[int, tuple[str, int]] = {}
        self._ssrc_mid: dict[int, str] = {}
        self._mid_kind: dict[str, str] = {}
        self._rtx_pts: set[int] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._hooked: set[int] = set()
        self._dtls: Any = None
        self._direct: asyncio.Task[None] | None = None
        self._ticker: Ticker | None = None
        self._stop_rtcp: list[Callable[[], None]] = []  # this participant's periodic RTCP
        self._readers: list[SocketReader] = []
        self.receive_path_note = ""  # why the socket could not be taken over, if it could not
        self._rtcp_ssrc = random.getrandbits(32)

    @property
    def packets(self) -> int:
        """RTP packets received (all streams, RTX included)."""
        return self._counter.packets

    @property
    def octets(self) -> int:
        return self._counter.octets

    @property
    def direct_packets(self) -> int:
        """SRTP packets taken straight from the socket (not through aiortc)."""
        return self._counter.direct

    # ---------------------------------------------------------------- lifecycle

    def _mark(self, milestone: str) -> None:
        if milestone not in self.milestones:
            self.milestones[milestone] = self._clock() - self._started

    async def start(self) -> None:
        """Connect, join and publish; subscription follows the server's offers."""
        config = self.config
        self._started = self._clock()
        if config.transport_cc:
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
        handle_publisher_rtcp(transceiver.sender, track)

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
        sdp = offer["sdp"] if self.config.transport_cc else without_transport_cc(offer["sdp"])
        codecs, ssrc_mid, mid_kind, twcc_id, rtx = _sdp_media(sdp)
        self._codecs.update(codecs)
        self._ssrc_mid.update(ssrc_mid)
        self._mid_kind.update(mid_kind)
        self._rtx_pts |= rtx
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        for transceiver in pc.getTransceivers():  # their receiver reports are the ticker's
            without_periodic_rtcp(transceiver.receiver)
        dtls = pc.getTransceivers()[0].receiver.transport
        if id(dtls) not in self._hooked:
            self._hooked.add(id(dtls))
            override(dtls, "_handle_rtp_data", self._on_rtp)
            self._dtls = dtls
        if self._ticker is None:
            self._ticker = Ticker.for_loop(TICK)
            self._stop_rtcp.append(self._ticker.every(REPORT_TICKS, self._send_report))
            self._counter.on_loss = self._nacks_due
        if twcc_id is not None and not self._counter.twcc_id:
            self._counter.twcc_id = twcc_id
            self._stop_rtcp.append(self._ticker.every(FEEDBACK_TICKS, self._send_feedback))
        if self.config.direct_receive and self._direct is None:
            self._direct = asyncio.ensure_future(self._read_socket_directly(dtls))
            self._tasks.append(self._direct)
        pin_ice_addresses(pc, self.config.ice)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
        if not self.config.transport_cc:
            answer = without_transport_cc(answer)
        await self.signaling.send({"type": "subscribe_answer", "revision": offer["revision"],
                                   "sdp": answer})

    # ---------------------------------------------------------------- receive path

    def _new_stream(self, ssrc: int, payload_type: int) -> ReceivedStream:
        mid = self._ssrc_mid.get(ssrc)
        name, clock_rate = self._codecs.get(payload_type, ("?", 90000))
        kind = self._mid_kind.get(mid or "", "audio" if name == "opus" else "video")
        return ReceivedStream(ssrc, kind, mid, clock_rate, rtx=payload_type in self._rtx_pts,
                              vp8=name == "vp8")

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        """aiortc's path: called by the DTLS transport with each decrypted packet."""
        self._counter.count(data, len(data))

    async def _read_socket_directly(self, dtls: Any) -> None:
        """After DTLS, read the selected pair's UDP socket here (``SocketReader``).

        SRTP and SRTCP are decrypted and counted in place; STUN (consent) and
        DTLS still reach aioice's protocol, which sends through the reader.
        Without a selected pair (never on loopback), uvloop keeps the socket
        and only its datagram callback is replaced (``DirectReceive``).
        """
        while dtls.state != "connected":
            if dtls.state in ("closed", "failed"):
                return
            await asyncio.sleep(0.05)
        connection = dtls.transport._connection
        pair = connection._nominated.get(1)
        for protocol in connection._protocols:
            if pair is not None and pair.protocol is protocol:
                try:
                    self._readers.append(SocketReader(protocol, pair.remote_addr,
                                                      dtls._rx_srtp, self._counter))
                    continue
                except (OSError, RuntimeError, AttributeError) as exc:  # uvloop keeps it
                    self.receive_path_note = f"socket not taken over: {exc}"
            direct = DirectReceive(dtls._rx_srtp, self._counter, protocol.datagram_received)
            protocol.datagram_received = direct.datagram_received

    def connection_state(self) -> str:
        """Where the subscription stands, for a report on who is still waiting for media."""
        pc = self.subscribe_pc
        if pc is None:
            return "no subscribe offer yet"
        dtls = self._dtls.state if self._dtls is not None else "none"
        return (f"ice {pc.iceConnectionState}, dtls {dtls}, "
                f"{len(self.streams)} stream(s), {self.packets} packet(s)")

    def become_sink(self) -> bool:
        """Drop this subscriber's media in the kernel from now on (``loadtest.kernel_sink``).

        Its counters stop and its RTCP stops with them (a receiver report would
        describe packets it no longer sees); ICE consent and DTLS go on. False
        when no socket was taken over (nothing to attach the filter to).
        """
        if not self._readers:
            return False
        for reader in self._readers:
            drop_media_in_kernel(reader.get_extra_info("socket"))
        self._stop_timers()
        return True

    def _stop_timers(self) -> None:
        for stop in self._stop_rtcp:
            stop()
        self._stop_rtcp.clear()
        self._counter.on_loss = no_loss_listener  # a sink's RTCP has stopped

    def _connected_dtls(self) -> Any:
        dtls = self._dtls
        return dtls if dtls is not None and dtls._state is DTLS_CONNECTED else None

    def _send_report(self) -> None:
        """Receiver reports, once a second (on the process's ``Ticker``)."""
        dtls = self._connected_dtls()
        if dtls is not None:
            report = self._counter.receiver_report(self._rtcp_ssrc)
            if report is not None:
                self._send_rtcp(dtls, report)

    def _send_feedback(self) -> None:
        """Transport-cc feedback for what arrived since the last one, every 100 ms."""
        dtls = self._connected_dtls()
        if dtls is not None:
            fci = self._counter.feedback.report()
            if fci is not None:
                self._send_rtcp(dtls, build_feedback_packet(self._rtcp_ssrc, 0, fci))

    def _nacks_due(self) -> None:
        """A stream has new missing packets: NACK them at the next tick."""
        if self._ticker is not None:
            self._ticker.soon(self._send_nacks)

    def _send_nacks(self) -> None:
        """NACK what is missing, and again at the next tick while anything still is."""
        dtls = self._connected_dtls()
        if dtls is None:
            return
        pending = False
        for stream in list(self._counter.streams.values()):
            if not stream.missing:
                continue
            lost = stream.take_nack()
            pending = pending or bool(stream.missing)
            if lost:
                stream.nacks_sent += 1
                nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc,
                                       media_ssrc=stream.ssrc)
                nack.lost = sorted(lost)
                self._send_rtcp(dtls, bytes(nack))
        if pending:
            self._nacks_due()

    def _send_rtcp(self, dtls: Any, packet: bytes) -> None:
        """SRTCP-protect and send now: through the socket this participant reads itself,
        or (without one) aiortc's coroutine."""
        if self._readers:
            with contextlib.suppress(ConnectionError, OSError):  # leaving: timers stop next
                self._readers[0].sendto(dtls._tx_srtp.protect_rtcp(packet))
        else:
            task = asyncio.ensure_future(dtls._send_rtp(packet))
            task.add_done_callback(_ignore_result)

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
        self._stop_timers()
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
