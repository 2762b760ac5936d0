"""A published source: one microphone, camera or screen of one participant.

The producer owns what is shared by every subscriber of the source, per
layer (one simulcast encoding, or the only stream): the reception statistics
reported upstream, the holes to NACK, the last sender report (lip sync), the measured bitrate
and resolution the allocator chooses by, and throttled keyframe requests. It
never looks inside a frame beyond the few bytes that say "keyframe starts
here" and, for VP8, how large it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.active_speaker import SILENCE_LEVEL
from sfu.allocator import DEFAULT_LAYER_BPS
from sfu.header_template import FIRST_BYTE_WITH_EXTENSION, PADDING_BIT
from sfu.keyframe_requests import KeyframeRequester
from sfu.payload import keyframe_test_for
from sfu.reception import NackTracker, ReceptionStats
from sfu.rtp import RtpHeader, abs_send_time_now
from sfu.stats import SfuCounters
from sfu.upstream_layers import UpstreamLayers
from sfu.vp8 import Vp8Descriptor, is_keyframe_start, keyframe_size, parse_descriptor

if TYPE_CHECKING:
    from sfu.aiortc_bridge import Codec
    from sfu.consumer import Consumer

logger = logging.getLogger(__name__)


def _ignore_failure(task: asyncio.Future[None]) -> None:
    """A NACK that could not be sent is not worth more than a log line at debug level."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("NACK upstream failed: %s", task.exception())

UPSTREAM_HEADROOM = 1.25  # REMB above the layers' sum, so the top layer is not starved
MAX_STREAMS = 8  # SSRCs tracked per layer: a restart now and then, never more
BITRATE_WINDOW = 1.0  # seconds of packets the layer bitrate is measured over
LAYER_STALE_AFTER = 1.5  # seconds without packets: the publisher stopped this layer


@dataclass(slots=True)
class MediaPacket:
    """One publisher packet as every consumer sees it (RTX already unwrapped).

    What every copy needs and is the same for all of them (the payload view,
    the header's first bytes, the send-time stamps) is computed here once per
    packet rather than once per subscriber.
    """

    data: bytes
    header: RtpHeader
    mime_type: str
    layer: int
    keyframe: bool
    audio_level: bytes | None
    vp8: Vp8Descriptor | None
    arrival: float = 0.0  # time.monotonic() when the SFU took it
    arrival_us: int = 0  # the same in microseconds: transport-cc send times
    abs_send_time: bytes = bytes(3)  # abs-send-time of this fan-out
    payload: bytes | memoryview = b""  # from the payload header on, padding included
    first_byte: int = FIRST_BYTE_WITH_EXTENSION  # V=2, X=1, and P when the source padded
    marker_bit: int = 0
    renumbered: dict[tuple[int, int], bytes] | None = None  # VP8 payloads by counter offsets
    in_order: bool = True  # the newest packet of its stream so far (not late, not a repair)


@dataclass(slots=True)
class SenderReport:
    ntp_timestamp: int
    rtp_timestamp: int
    received_at: float


class BitrateMeter:
    """Bits per second over the last second, from packet sizes."""

    __slots__ = ("_bytes", "_samples")

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, size: int, now: float) -> None:
        self._samples.append((now, size))
        self._bytes += size
        self._expire(now)

    def _expire(self, now: float) -> None:
        samples = self._samples
        while samples and now - samples[0][0] > BITRATE_WINDOW:
            self._bytes -= samples.popleft()[1]

    def bps(self, now: float) -> int:
        self._expire(now)
        return int(self._bytes * 8 / BITRATE_WINDOW)


class Layer:
    """One encoding of a source: a simulcast rid, or the source's only stream."""

    def __init__(self, index: int, rid: str | None,
                 send_pli: Callable[[int], Awaitable[None]]) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None
        self.reception: dict[int, ReceptionStats] = {}
        self.nacks: dict[int, NackTracker] = {}
        self.sender_reports: dict[int, SenderReport] = {}
        self.bitrate = BitrateMeter()
        self.width = 0
        self.height = 0
        self.last_packet_at = 0.0
        self._send_pli = send_pli
        self.keyframes = KeyframeRequester(self._request_upstream)

    async def _request_upstream(self) -> None:
        if self.ssrc is not None:
            await self._send_pli(self.ssrc)

    def active(self, now: float) -> bool:
        return now - self.last_packet_at < LAYER_STALE_AFTER


class Producer:
    """One published track, its layers, and the consumers it fans out to."""

    def __init__(
        self,
        *,
        source_id: str,
        participant_id: str,
        kind: str,
        mid: str,
        codecs: dict[int, Codec],
        counters: SfuCounters,
        send_pli: Callable[[int], Awaitable[None]],
        send_nack: Callable[[int, list[int]], Awaitable[None]],
        rids: tuple[str, ...] = (),
    ) -> None:
        self.id = source_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codecs = {pt: c for pt, c in codecs.items() if c.rtx_for is None}
        self.rtx_payload_types = {pt: c.rtx_for for pt, c in codecs.items() if c.rtx_for}
        self.consumers: list[Consumer] = []
        self.layers = [Layer(i, rid, self._count_pli(send_pli))
                       for i, rid in enumerate(rids or (None,))]
        self.closed = False
        self.upstream = UpstreamLayers(len(self.layers))
        # Called with the encodings the publisher should keep on (low to high) when that changes.
        self.on_upstream_layers: Callable[[Producer, tuple[bool, ...]], None] | None = None
        # Called with (source id, loudness 0-127, time) for each audio packet that has a level.
        self.level_listener: Callable[[str, int, float], None] | None = None
        self._counters = counters
        self._send_nack = send_nack

    def _count_pli(self, send_pli: Callable[[int], Awaitable[None]]
                   ) -> Callable[[int], Awaitable[None]]:
        async def send(ssrc: int) -> None:
            if not self.closed:
                self._counters.plis_sent_upstream += 1
                await send_pli(ssrc)
        return send

    @property
    def simulcast(self) -> bool:
        return len(self.layers) > 1

    def wanted_bitrate(self) -> int:
        """What the publisher should spend on this source: enough for the highest layer any
        consumer targets (and the ones below it). Sent upstream as REMB, it also stops
        the publisher from encoding layers nobody watches."""
        targets = [c.target_layer for c in self.consumers if c.active and not c.paused]
        top = max(targets, default=0)
        return int(sum(DEFAULT_LAYER_BPS[: top + 1]) * UPSTREAM_HEADROOM)

    def refresh_upstream_layers(self, now: float) -> None:
        """Tell the publisher which simulcast encodings someone needs, when that changed."""
        if not self.simulcast or self.closed or self.on_upstream_layers is None:
            return
        targets = [c.target_layer for c in self.consumers if c.active and not c.paused]
        active = self.upstream.update(max(targets, default=0), now)
        if active is not None:
            self.on_upstream_layers(self, active)

    def layer_for_rid(self, rid: str) -> int | None:
        for layer in self.layers:
            if layer.rid == rid:
                return layer.index
        return None

    def layer_stats(self) -> list[dict[str, object]]:
        now = time.monotonic()
        told = self.upstream.told
        return [{"rid": layer.rid, "ssrc": layer.ssrc, "active": layer.active(now),
                 "requested": told is None or told[layer.index],  # publish_layers
                 "bitrate": layer.bitrate.bps(now), "width": layer.width,
                 "height": layer.height,
                 # ingress loss as sequence gaps (the publisher's packets that never came)
                 "received": sum(r.packets_received for r in layer.reception.values()),
                 "expected": sum(r.packets_expected for r in layer.reception.values())}
                for layer in self.layers]

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "participant_id": self.participant_id, "kind": self.kind}

    def track_info(self) -> dict[str, str]:
        """What a subscriber is told about the m-line carrying this source."""
        return {"source_id": self.id, "participant_id": self.participant_id, "kind": self.kind}

    def on_packet(self, layer_index: int, data: bytes, header: RtpHeader, arrival: float,
                  audio_level: bytes | None, *, retransmission: bool = False) -> None:
        """Account for one decrypted media packet and forward it to every consumer."""
        codec = self.codecs.get(header.payload_type)
        if codec is None:
            self._counters.rtp_dropped_unknown_payload += 1
            return
        layer = self.layers[layer_index]
        ssrc = header.ssrc
        stats = layer.reception.get(ssrc)
        if stats is None:
            if len(layer.reception) >= MAX_STREAMS:
                oldest = next(iter(layer.reception))
                del layer.reception[oldest], layer.nacks[oldest]
            stats = layer.reception[ssrc] = ReceptionStats(codec.clock_rate)
            layer.nacks[ssrc] = NackTracker()
        layer.ssrc = ssrc
        in_order = stats.add(header.sequence_number, header.timestamp, arrival)
        if self.kind == "video" and layer.nacks[ssrc].add(header.sequence_number):
            lost = sorted(layer.nacks[ssrc].missing)
            self._counters.nacks_sent_upstream += 1
            nack = asyncio.ensure_future(self._send_nack(ssrc, lost))
            nack.add_done_callback(_ignore_failure)
        now = time.monotonic()
        layer.last_packet_at = now
        if not retransmission:  # RTX also carries the browser's bandwidth probes
            layer.bitrate.add(len(data), now)
        if audio_level and self.level_listener is not None:
            self.level_listener(self.id, SILENCE_LEVEL - (audio_level[0] & 0x7F), now)
        if header.payload_size == 0:
            self._counters.rtp_padding_dropped += 1
            if not layer.nacks[ssrc].missing:  # see Consumer.skip: no repair may come
                for consumer in self.consumers:
                    consumer.skip(layer_index, ssrc, header.sequence_number)
            return
        packet = self._media_packet(layer, data, header, codec.mime_type, audio_level)
        packet.in_order = in_order
        packet.arrival = now
        packet.arrival_us = int(now * 1_000_000)
        packet.abs_send_time = abs_send_time_now(time.time())
        packets = octets = 0
        for consumer in self.consumers:
            try:
                sent = consumer.forward(packet)
            except Exception:
                self._counters.consumer_errors += 1
                logger.exception("consumer %s failed; the publisher is unaffected", consumer)
                continue
            if sent:
                packets += 1
                octets += sent
        counters = self._counters
        counters.rtp_packets_out += packets
        counters.rtp_bytes_out += octets

    def _media_packet(self, layer: Layer, data: bytes, header: RtpHeader, mime_type: str,
                      audio_level: bytes | None) -> MediaPacket:
        keyframe = False
        vp8 = None
        if mime_type == "video/vp8":
            vp8 = parse_descriptor(data, header.payload_start, header.payload_end)
            keyframe = vp8 is not None and is_keyframe_start(data, vp8, header.payload_end)
            if keyframe and vp8 is not None:
                size = keyframe_size(data, vp8, header.payload_end)
                if size is not None:
                    layer.width, layer.height = size
        elif self.kind == "video":
            test = keyframe_test_for(mime_type)
            keyframe = test is not None and test(data, header.payload_start, header.payload_end)
        if keyframe:
            layer.keyframes.keyframe_received()
        padded = header.payload_end < len(data)
        return MediaPacket(data=data, header=header, mime_type=mime_type, layer=layer.index,
                           keyframe=keyframe, audio_level=audio_level, vp8=vp8,
                           payload=memoryview(data)[header.payload_start:],
                           first_byte=FIRST_BYTE_WITH_EXTENSION | (PADDING_BIT if padded else 0),
                           marker_bit=0x80 if header.marker else 0)

    def media_ssrc(self, layer_index: int) -> int | None:
        return self.layers[layer_index].ssrc

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        for layer in self.layers:
            if ssrc in layer.reception:
                report = SenderReport(ntp_timestamp, rtp_timestamp, time.time())
                layer.sender_reports[ssrc] = report
                for consumer in self.consumers:
                    consumer.on_sender_report(ssrc, report)
                return

    def request_keyframe(self, layer_index: int) -> None:
        """A subscriber needs a keyframe of one layer; the requester folds bursts into one PLI."""
        if self.kind == "video" and not self.closed and 0 <= layer_index < len(self.layers):
            self.layers[layer_index].keyframes.request()

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def close(self) -> None:
        self.closed = True
        for layer in self.layers:
            layer.keyframes.close()
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
