"""The one module that knows aiortc 1.16.0 / aioice 0.13.0 internals.

aiortc is an endpoint: its receivers decode and its senders encode. The SFU
keeps aiortc for what it does well (ICE, DTLS, SRTP, SDP) and takes the media
away from it per instance, without patching any class or module function:

* publish side: the DTLS transport's ``_handle_rtp_data`` / ``_handle_rtcp_data``
  are replaced on the instance, so decrypted RTP never reaches a receiver, and
  each receiver's decoder thread is stopped as soon as aiortc starts it;
* subscribe side: each sender gets a track that never yields a frame (no
  encoder is ever created) and no periodic RTCP task; the SFU writes packets
  and sender reports through ``srtp_wire.RtpWire`` and reads the subscriber's
  RTCP itself (``sfu.subscriber_rtcp``) by replacing the DTLS transport's
  ``_handle_rtcp_data`` on the instance;
* ICE: aioice only gathers non-loopback interface addresses; each connection's
  ``gather_candidates`` is replaced on the instance to bind one configured
  address and announce another (a public IP behind 1:1 NAT, or 127.0.0.1).

The send fast path (SRTP protect + ``sendto`` on the nominated pair, no
coroutines) lives beside it in ``srtp_wire.py``, under the same pins.
``self_check()`` runs at start-up and fails loudly if an upgrade moved any of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from types import SimpleNamespace
from typing import Any

import aioice
import aiortc
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpHeaderExtensionParameters,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import rtp as aiortc_rtp
from aiortc import sdp as aiortc_sdp
from aiortc.clock import current_ntp_time
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rate import RemoteBitrateEstimator as RemoteBitrateEstimator
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtcpFeedback
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from sfu.rtp import MalformedPacket
from sfu.simulcast_sdp import accept_simulcast, simulcast_offers, without_transport_cc
from sfu.srtp_wire import IncomingRtpTap, RtpWire, wire_self_check
from sfu.stats import SfuCounters
from sfu.subscriber_rtcp import SubscriberFeedback, read_subscriber_rtcp
from sfu.twcc import TRANSPORT_CC_URI

logger = logging.getLogger(__name__)

PINNED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

# Extensions aiortc does not negotiate by default. Ids are unique across kinds
# because BUNDLE shares one id space (aiortc uses 1-3). transport-cc is only
# ever negotiated towards subscribers: publisher offers lose it first
# (simulcast_sdp.without_transport_cc).
_EXTRA_EXTENSIONS = {
    "audio": {TRANSPORT_CC_URI: 5},
    "video": {TRANSPORT_CC_URI: 5, RID_URI: 10, REPAIRED_RID_URI: 11},
}

RTCP_PSFB_APP = aiortc_rtp.RTCP_PSFB_APP


class AiortcInternalsChanged(RuntimeError):
    """aiortc or aioice is not the version whose internals the SFU hooks."""


# What OutboundSlot reads of aiortc's sender: its CNAME (for SDES) and the events its
# ``stop`` waits for, which the SFU's replacement of the periodic RTCP task sets.
_SENDER_PRIVATE_FIELDS = ("cname", "rtcp_started", "rtcp_exited")

_REQUIRED_INTERNALS: list[tuple[object, str]] = [
    (RTCDtlsTransport, "_handle_rtp_data"),
    (RTCDtlsTransport, "_handle_rtcp_data"),
    (RTCDtlsTransport, "_send_rtp"),
    (RTCRtpReceiver, "_handle_rtcp_packet"),
    (RTCRtpReceiver, "_handle_disconnect"),
    (RTCRtpReceiver, "_send_rtcp"),
    (RTCRtpReceiver, "_send_rtcp_pli"),
    (RTCRtpReceiver, "_send_rtcp_nack"),
    (RTCRtpReceiver, "receive"),
    (RTCRtpSender, "_run_rtcp"),
    (RTCRtpSender, "replaceTrack"),
    (aioice.Connection, "get_component_candidates"),
    (aioice.Connection, "gather_candidates"),
    (aiortc_rtp, "RtcpPacket"),
    (aiortc_rtp, "RtcpRrPacket"),
    (aiortc_rtp, "RtcpReceiverInfo"),
    (aiortc_rtp, "RtcpSrPacket"),
    (aiortc_rtp, "RtcpSenderInfo"),
    (aiortc_rtp, "RtcpSdesPacket"),
    (aiortc_rtp, "RtcpSourceInfo"),
    (aiortc_rtp, "RtcpPsfbPacket"),
    (aiortc_rtp, "RtcpRtpfbPacket"),
    (aiortc_rtp, "pack_remb_fci"),
    (aiortc_sdp.SessionDescription, "parse"),
    (RemoteBitrateEstimator, "add"),
]


def configure_aiortc() -> None:
    """Let aiortc negotiate what simulcast and send-side estimation need (data, not code)."""
    for kind, extra in _EXTRA_EXTENSIONS.items():
        extensions = HEADER_EXTENSIONS[kind]
        known = {extension.uri for extension in extensions}
        for uri, ext_id in extra.items():
            if uri not in known:
                extensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))
    for kind in ("audio", "video"):
        for codec in CODECS[kind]:
            if codec.mimeType.lower() in ("video/rtx", "audio/g722", "audio/pcmu", "audio/pcma"):
                continue
            if not any(fb.type == "transport-cc" for fb in codec.rtcpFeedback):
                codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


def _probe_objects() -> tuple[RTCRtpSender, RTCRtpReceiver]:
    transport = SimpleNamespace(state="new")
    return (RTCRtpSender("video", transport),  # type: ignore[arg-type]
            RTCRtpReceiver("video", transport))  # type: ignore[arg-type]


def _with_event_loop(build: Callable[[], Any]) -> Any:
    """aiortc objects look up the current event loop when built; give them one if needed."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return build()
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return build()


def self_check() -> None:
    """Assert that every aiortc/aioice internal the SFU relies on is where it expects."""
    problems = []
    for package, wanted in PINNED_VERSIONS.items():
        found = metadata.version(package)
        if found != wanted:
            problems.append(f"{package} {found} is installed, visio needs exactly {wanted}")
    for owner, name in _REQUIRED_INTERNALS:
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    probe_connection = aioice.Connection(ice_controlling=False)
    for name in ("_local_candidates", "_local_candidates_start", "_local_candidates_end",
                 "_components"):
        if not hasattr(probe_connection, name):
            problems.append(f"aioice.Connection instance attribute {name} is missing")
    probe_sender, probe_receiver = _with_event_loop(_probe_objects)
    for name in ("_ssrc", "_rtx_ssrc", "_stream_id", "_track_id"):
        if not hasattr(probe_sender, name):
            problems.append(f"RTCRtpSender instance attribute {name} is missing")
    for name in ("rtcp_ssrc", "rtcp_started", "rtcp_exited"):
        if not hasattr(probe_receiver, f"_RTCRtpReceiver__{name}"):
            problems.append(f"RTCRtpReceiver private field __{name} is missing")
    for name in _SENDER_PRIVATE_FIELDS:
        if not hasattr(probe_sender, f"_RTCRtpSender__{name}"):
            problems.append(f"RTCRtpSender private field __{name} is missing")
    problems.extend(wire_self_check())
    if problems:
        raise AiortcInternalsChanged("; ".join(problems))
    configure_aiortc()


# --------------------------------------------------------------------------- ICE


@dataclass(frozen=True)
class IceSettings:
    """Where the SFU's ICE sockets bind and which address its candidates announce."""

    bind_address: str = "127.0.0.1"
    announced_address: str = "127.0.0.1"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.announced_address).is_loopback


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with one bundled transport and no STUN server of its own."""
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


_pinned_connections: weakref.WeakSet[aioice.Connection] = weakref.WeakSet()
_taken_receivers: weakref.WeakSet[RTCRtpReceiver] = weakref.WeakSet()


def override(instance: object, method: str, replacement: Callable[..., Any]) -> None:
    """Replace one method on one instance (never on the class): the SFU's only way in."""
    if not hasattr(instance, method):
        raise AiortcInternalsChanged(f"{type(instance).__name__}.{method} is missing")
    setattr(instance, method, replacement)


def private(instance: object, mangled_name: str) -> Any:
    """Read a name-mangled private attribute (listed in ``self_check``)."""
    return getattr(instance, mangled_name)


def pin_ice_addresses(pc: RTCPeerConnection, ice: IceSettings) -> None:
    """Make every ICE connection of ``pc`` gather one host candidate on ``ice``.

    Call after transceivers exist and before ``setLocalDescription``.
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport.iceGatherer._connection
        if connection in _pinned_connections:
            continue
        override(connection, "gather_candidates", _pinned_gatherer(connection, ice))
        _pinned_connections.add(connection)


def _pinned_gatherer(connection: aioice.Connection, ice: IceSettings) -> Callable[[], Any]:
    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in connection._components:
            candidates = await connection.get_component_candidates(
                component=component, addresses=[ice.bind_address]
            )
            for candidate in candidates:
                if candidate.type == "host":
                    candidate.host = ice.announced_address
            connection._local_candidates += candidates
        connection._local_candidates_end = True

    return gather_candidates


_CANDIDATE_LINE = re.compile(r"^a=candidate:\S+ \d+ (\S+) \d+ (\S+) \d+ typ \S+", re.IGNORECASE)


def filter_remote_candidates(sdp: str, ice: IceSettings) -> str:
    """Keep only the remote candidates this SFU can and may reach.

    A loopback deployment (tests, a laptop) talks to 127.0.0.0/8 only, so a
    browser's other interfaces are removed; a public deployment cannot reach a
    browser's loopback. aioice speaks UDP only, so TCP candidates go too.
    """
    kept = []
    for line in sdp.splitlines():
        match = _CANDIDATE_LINE.match(line)
        if match:
            transport, address = match.groups()
            if transport.lower() != "udp" or not _reachable(address, ice.loopback):
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def _reachable(address: str, loopback_only: bool) -> bool:
    try:
        is_loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        return not loopback_only  # an mDNS name: never a loopback address
    return is_loopback if loopback_only else not is_loopback


class NeverTrack(MediaStreamTrack):
    """A track whose ``recv`` never returns: aiortc's sender stays idle and creates no encoder."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._visio_id = track_id

    @property
    def id(self) -> str:
        return self._visio_id

    async def recv(self) -> Any:
        await asyncio.Event().wait()
        raise MediaStreamError  # pragma: no cover - unreachable


# --------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Codec:
    """One negotiated payload type."""

    payload_type: int
    mime_type: str  # lower case, e.g. "video/vp8"
    clock_rate: int
    rtx_for: int | None = None  # for an RTX payload type: the payload type it repairs


@dataclass
class IncomingTrack:
    """One m-line of a publisher's offer that sends media to the SFU."""

    mid: str
    kind: str
    codecs: dict[int, Codec]
    media_ssrcs: list[int] = field(default_factory=list)
    rtx_ssrcs: dict[int, int] = field(default_factory=dict)  # rtx ssrc -> media ssrc
    rids: tuple[str, ...] = ()  # simulcast layers, as the browser listed them


def _codecs_of(transceiver: RTCRtpTransceiver) -> dict[int, Codec]:
    codecs: dict[int, Codec] = {}
    for codec in transceiver._codecs:
        if codec.payloadType is None:
            continue
        apt = codec.parameters.get("apt") if codec.mimeType.lower().endswith("/rtx") else None
        codecs[codec.payloadType] = Codec(
            payload_type=codec.payloadType,
            mime_type=codec.mimeType.lower(),
            clock_rate=codec.clockRate,
            rtx_for=int(apt) if apt is not None else None,
        )
    return codecs


def _extension_ids(transceivers: list[RTCRtpTransceiver]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for transceiver in transceivers:
        for extension in transceiver._headerExtensions:
            ids[extension.uri] = extension.id
    return ids


def _signalled_ssrcs(offer: str) -> dict[str, tuple[list[int], dict[int, int]]]:
    """Per mid: media SSRCs and rtx->media pairs from ``a=ssrc`` / ``a=ssrc-group:FID``."""
    parsed = aiortc_sdp.SessionDescription.parse(offer)
    result: dict[str, tuple[list[int], dict[int, int]]] = {}
    for media in parsed.media:
        mid = media.rtp.muxId
        rtx: dict[int, int] = {}
        for group in media.ssrc_group:
            if group.semantic == "FID" and len(group.items) == 2:
                rtx[int(group.items[1])] = int(group.items[0])
        media_ssrcs = [s.ssrc for s in media.ssrc if s.ssrc not in rtx]
        result[mid] = (list(dict.fromkeys(media_ssrcs)), rtx)
    return result


# --------------------------------------------------------------------------- publish side

RtpHandler = Callable[[bytes, int], None]  # decrypted RTP, arrival in NTP milliseconds
SenderReportHandler = Callable[[int, int, int], None]
StateHandler = Callable[[str], Awaitable[None]]


class PublishConnection:
    """The peer connection a participant publishes on: browser offers, SFU answers."""

    def __init__(
        self,
        ice: IceSettings,
        on_rtp: RtpHandler,
        on_sender_report: SenderReportHandler,
        on_state: StateHandler,
        counters: SfuCounters,
    ) -> None:
        self._ice = ice
        self._counters = counters
        self._on_rtp = on_rtp
        self._on_sender_report = on_sender_report
        self._pc = new_peer_connection()
        self._hooked: RTCDtlsTransport | None = None
        self._tap: IncomingRtpTap | None = None
        self.extension_ids: dict[str, int] = {}

        @self._pc.on("connectionstatechange")
        async def _state_changed() -> None:
            await on_state(self._pc.connectionState)

    async def accept_offer(self, offer: str) -> tuple[str, list[IncomingTrack]]:
        """Apply a (re-)offer; returns the answer and the m-lines that now send media."""
        offer = without_transport_cc(filter_remote_candidates(offer, self._ice))
        if "\nm=" not in offer:
            raise ValueError("the offer has no media section")
        simulcast = simulcast_offers(offer)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        transceivers = self._pc.getTransceivers()
        for transceiver in transceivers:
            self._take_receiver(transceiver.receiver)
        self._hook_transport(transceivers)
        pin_ice_addresses(self._pc, self._ice)
        answer = await self._pc.createAnswer()
        await self._pc.setLocalDescription(answer)
        self.extension_ids = _extension_ids(transceivers)
        signalled = _signalled_ssrcs(offer)
        tracks = []
        for transceiver in transceivers:
            mid = transceiver.mid
            if mid is None or transceiver.currentDirection not in ("recvonly", "sendrecv"):
                continue
            media_ssrcs, rtx = signalled.get(mid, ([], {}))
            layers = simulcast.get(mid)
            tracks.append(
                IncomingTrack(
                    mid=mid,
                    kind=transceiver.kind,
                    codecs=_codecs_of(transceiver),
                    media_ssrcs=media_ssrcs,
                    rtx_ssrcs=rtx,
                    rids=layers.rids if layers else (),
                )
            )
        return accept_simulcast(self._pc.localDescription.sdp, simulcast), tracks

    def _hook_transport(self, transceivers: list[RTCRtpTransceiver]) -> None:
        if not transceivers or self._hooked is not None:
            return
        dtls = transceivers[0].receiver.transport
        tap = self._tap = IncomingRtpTap(dtls, self._on_rtp)
        on_rtp = self._on_rtp

        async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
            # The first packets after the handshake come through aiortc; from then on
            # the tap delivers them straight from the socket.
            on_rtp(data, arrival_time_ms)
            tap.install()

        override(dtls, "_handle_rtp_data", handle_rtp_data)
        override(dtls, "_handle_rtcp_data", self._handle_rtcp_data)
        self._hooked = dtls

    @staticmethod
    def _take_receiver(receiver: RTCRtpReceiver) -> None:
        """Stop the decoder thread aiortc starts in ``receive``: the SFU never decodes."""
        if receiver in _taken_receivers:
            return
        original_receive = receiver.receive

        async def receive(parameters: Any) -> None:
            await original_receive(parameters)
            receiver._handle_disconnect()

        override(receiver, "receive", receive)
        _taken_receivers.add(receiver)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        """Publisher RTCP: only sender reports matter (lip sync, LSR for our reports)."""
        try:
            packets = aiortc_rtp.RtcpPacket.parse(data)
        except Exception:
            self._counters.rtcp_malformed += 1
            return
        for packet in packets:
            if isinstance(packet, aiortc_rtp.RtcpSrPacket):
                info = packet.sender_info
                try:
                    self._on_sender_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
                except Exception:
                    logger.exception("sender report handling failed")

    def _receiver_for(self, mid: str) -> RTCRtpReceiver | None:
        for transceiver in self._pc.getTransceivers():
            if transceiver.mid == mid:
                return transceiver.receiver
        return None

    async def send_pli(self, mid: str, media_ssrc: int) -> None:
        receiver = self._receiver_for(mid)
        if receiver is not None:
            await receiver._send_rtcp_pli(media_ssrc)

    async def send_nack(self, mid: str, media_ssrc: int, lost: list[int]) -> None:
        receiver = self._receiver_for(mid)
        if receiver is not None:
            await receiver._send_rtcp_nack(media_ssrc, lost)

    async def send_receiver_report(self, mid: str, blocks: list[tuple[int, Any, int, int]]) -> None:
        """One RR from the receiver of ``mid``: (ssrc, ReportBlock, lsr, dlsr) per stream."""
        receiver = self._receiver_for(mid)
        if receiver is None or not blocks:
            return
        reports = [
            aiortc_rtp.RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=block.fraction_lost,
                packets_lost=block.packets_lost,
                highest_sequence=block.highest_sequence,
                jitter=block.jitter,
                lsr=lsr,
                dlsr=dlsr,
            )
            for ssrc, block, lsr, dlsr in blocks
        ]
        rtcp_ssrc = private(receiver, "_RTCRtpReceiver__rtcp_ssrc")
        await receiver._send_rtcp(aiortc_rtp.RtcpRrPacket(ssrc=rtcp_ssrc, reports=reports))

    async def send_remb(self, mid: str, bitrate: int, ssrcs: list[int]) -> None:
        receiver = self._receiver_for(mid)
        if receiver is None:
            return
        packet = aiortc_rtp.RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=private(receiver, "_RTCRtpReceiver__rtcp_ssrc"),
            media_ssrc=0,
            fci=aiortc_rtp.pack_remb_fci(bitrate, ssrcs),
        )
        await receiver._send_rtcp(packet)

    async def close(self) -> None:
        await self._pc.close()


# --------------------------------------------------------------------------- subscribe side

FeedbackHandler = Callable[["OutboundSlot", SubscriberFeedback], None]


def without_periodic_rtcp(owner: RTCRtpSender | RTCRtpReceiver) -> None:
    """Replace aiortc's periodic RTCP task of one sender or receiver by one that sends nothing.

    aiortc's task wakes up every 0.5-1.5 s per m-line and builds and sends a
    report through three coroutines and aioice. Where visio sends those
    reports itself (the SFU's SRs as the publisher's arrive,
    ``OutboundSlot.send_sender_report``; a light client's RRs on its
    ``Ticker``), the task only costs a wake-up per m-line and second (on
    this VM 100-150 µs of CPU each). Its replacement sets the events
    ``stop`` waits for and waits to be cancelled. Replacing twice is harmless.
    """
    if "_run_rtcp" in vars(owner):
        return
    prefix = f"_{type(owner).__name__}__rtcp_"

    async def no_periodic_reports() -> None:
        private(owner, prefix + "started").set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().create_future()  # until stop() cancels it
        private(owner, prefix + "exited").set()

    override(owner, "_run_rtcp", no_periodic_reports)


class OutboundSlot:
    """One sendonly m-line of a subscriber's connection, reused as sources come and go.

    After each answer its negotiated parameters (SSRCs, payload types,
    extension ids) are refreshed from aiortc; the SFU's consumer writes packets
    through ``wire`` (all slots of one connection share its bundled transport's wire).
    """

    def __init__(self, transceiver: RTCRtpTransceiver, wire: RtpWire) -> None:
        self.transceiver = transceiver
        self.wire = wire
        self.kind: str = transceiver.kind
        self.source_id: str | None = None
        self.mid: str | None = None
        self.ssrc: int = transceiver.sender._ssrc
        self.rtx_ssrc: int = transceiver.sender._rtx_ssrc
        self.payload_types: dict[str, int] = {}  # mime type -> payload type
        self.rtx_payload_types: dict[int, int] = {}  # media payload type -> rtx payload type
        self.extension_ids: dict[str, int] = {}
        self.send_errors = 0
        # Continuity across reuse: the browser sees one SSRC per m-line, so the
        # next source on this slot continues its sequence and timestamp.
        self.next_sequence = secrets.randbelow(0x8000)
        self.next_rtx_sequence = secrets.randbelow(0x8000)
        self.last_timestamp = secrets.randbelow(0x100000000)
        self.last_sent_at: float | None = None
        self.last_picture_id: int | None = None  # VP8 counters, continuous across sources
        self.last_tl0picidx: int | None = None
        self.last_vp8: Any = None  # the last VP8 descriptor sent, not yet folded into the above
        self.last_vp8_segment: Any = None  # and the consumer's offsets it was sent with
        self._sdes: bytes | None = None  # the SDES CNAME chunk every SR carries, built once
        without_periodic_rtcp(transceiver.sender)

    def assign(self, source_id: str, stream_id: str) -> None:
        """Carry ``source_id`` from the next offer on, in the publisher's media stream."""
        self.source_id = source_id
        sender = self.transceiver.sender
        sender._stream_id = stream_id
        sender.replaceTrack(NeverTrack(self.kind, source_id))
        self.transceiver.direction = "sendonly"

    def release(self) -> None:
        """Idle this m-line (inactive in the next offer) until another source needs it."""
        self.source_id = None
        self.transceiver.direction = "inactive"

    def refresh_parameters(self) -> None:
        transceiver = self.transceiver
        self.mid = transceiver.mid
        self.payload_types = {}
        self.rtx_payload_types = {}
        for codec in _codecs_of(transceiver).values():
            if codec.rtx_for is not None:
                self.rtx_payload_types[codec.rtx_for] = codec.payload_type
            else:
                self.payload_types.setdefault(codec.mime_type, codec.payload_type)
        self.extension_ids = {ext.uri: ext.id for ext in transceiver._headerExtensions}

    def send_rtp(self, data: bytes) -> bool:
        """Protect and send one whole packet; False (and counted) when it cannot go out."""
        if self.wire.send(data, b""):
            return True
        self.send_errors += 1
        return False

    def send_sender_report(self, ntp: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        """An SR (and SDES CNAME) to the subscriber now, with the publisher's NTP/RTP mapping
        in this m-line's timestamps (lip sync): sent as each of the publisher's own SRs is
        relayed, about once a second per stream (RFC 3550 allows down to one per 5 s)."""
        info = aiortc_rtp.RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=rtp_timestamp & 0xFFFFFFFF,
            packet_count=packets & 0xFFFFFFFF, octet_count=octets & 0xFFFFFFFF)
        report = bytes(aiortc_rtp.RtcpSrPacket(ssrc=self.ssrc, sender_info=info))
        if self._sdes is None:
            cname = private(self.transceiver.sender, "_RTCRtpSender__cname")
            if cname is not None:  # set by aiortc once the m-line is negotiated
                self._sdes = bytes(aiortc_rtp.RtcpSdesPacket(chunks=[aiortc_rtp.RtcpSourceInfo(
                    ssrc=self.ssrc, items=[(1, cname.encode("utf8"))])]))
        self.wire.send_rtcp(report + (self._sdes or b""))


class SubscribeConnection:
    """The peer connection a participant receives on: the SFU offers, the browser answers."""

    def __init__(self, ice: IceSettings, on_feedback: FeedbackHandler,
                 on_state: StateHandler, counters: SfuCounters,
                 on_transport_feedback: Callable[[list[bytes]], None]) -> None:
        self._ice = ice
        self._counters = counters
        self._on_transport_feedback = on_transport_feedback
        self._on_feedback = on_feedback
        self._pc = new_peer_connection()
        self.slots: list[OutboundSlot] = []
        self._slot_by_ssrc: dict[int, OutboundSlot] = {}
        self._wire: RtpWire | None = None

        @self._pc.on("connectionstatechange")
        async def _state_changed() -> None:
            await on_state(self._pc.connectionState)

    def add_slot(self, kind: str) -> OutboundSlot:
        transceiver = self._pc.addTransceiver(NeverTrack(kind, "idle"), direction="inactive")
        if self._wire is None:  # BUNDLE: the first m-line's transport carries every slot
            self._guard_transport(transceiver.sender.transport)
            self._wire = RtpWire(transceiver.sender.transport)
        slot = OutboundSlot(transceiver, self._wire)
        self.slots.append(slot)
        self._slot_by_ssrc[slot.ssrc] = slot
        return slot

    def _guard_transport(self, dtls: RTCDtlsTransport) -> None:
        """Read the subscriber's RTCP here, and keep its hostile packets out of aiortc.

        aiortc's RTCP handler only catches ``ValueError``; any other parse
        failure would end the transport, and its path costs several times
        reading the packet (``sfu.subscriber_rtcp``). Every RTCP packet is
        read by ``_read_rtcp``: the first ones from aiortc's transport, the
        rest, once the first has come, straight from the socket by an
        ``IncomingRtpTap``. Subscribers send no media, so RTP on this
        transport is dropped unread.
        """
        tap = IncomingRtpTap(dtls, self._unexpected_rtp, self._read_rtcp_from_socket)

        async def handle_rtcp_data(data: bytes) -> None:
            tap.install()
            self._read_rtcp(data)

        async def drop_rtp(data: bytes, arrival_time_ms: int) -> None:
            self._unexpected_rtp(data, arrival_time_ms)

        override(dtls, "_handle_rtcp_data", handle_rtcp_data)
        override(dtls, "_handle_rtp_data", drop_rtp)

    def _unexpected_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self._counters.rtp_unexpected_on_subscribe += 1

    def _read_rtcp_from_socket(self, data: bytes) -> None:
        self._counters.rtcp_feedback_direct += 1
        self._read_rtcp(data)

    def _read_rtcp(self, data: bytes) -> None:
        """One decrypted (compound) RTCP packet from the subscriber, to whom it concerns."""
        try:
            rtcp = read_subscriber_rtcp(data)
        except MalformedPacket:
            self._counters.rtcp_malformed += 1
            return
        try:
            if rtcp.transport_fcis:
                self._on_transport_feedback(rtcp.transport_fcis)
            for ssrc, feedback in rtcp.feedback:
                slot = self._slot_by_ssrc.get(ssrc)
                if slot is not None:
                    self._on_feedback(slot, feedback)
        except Exception:
            logger.exception("subscriber feedback handling failed")

    async def create_offer(self) -> str:
        pin_ice_addresses(self._pc, self._ice)
        offer = await self._pc.createOffer()
        await self._pc.setLocalDescription(offer)
        return str(self._pc.localDescription.sdp)

    async def accept_answer(self, answer: str) -> None:
        answer = filter_remote_candidates(answer, self._ice)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for slot in self.slots:
            slot.refresh_parameters()

    async def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        await self._pc.close()


def ntp_now() -> int:
    """The current time as a 64-bit NTP timestamp (RFC 3550 §4)."""
    return int(current_ntp_time())


def installed_versions() -> dict[str, str]:
    return {"aiortc": aiortc.__version__, "aioice": metadata.version("aioice"),
            "pylibsrtp": metadata.version("pylibsrtp")}
