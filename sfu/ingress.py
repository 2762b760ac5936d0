"""The publish transport's packet path: decrypted bytes in, producers out.

Runs inside aiortc's DTLS receive loop, so nothing may escape it: an
exception there would end the publisher's whole transport. Demultiplexing
follows RFC 8843 §9.2: a known SSRC first, then the MID header extension,
then a payload type owned by a single m-line. RTX (RFC 4588) is unwrapped
here so that producers and consumers only ever see media packets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from sfu.aiortc_bridge import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    MID_URI,
    REPAIRED_RID_URI,
    RID_URI,
    IncomingTrack,
    PublishConnection,
    RemoteBitrateEstimator,
)
from sfu.producer import Producer
from sfu.rtp import MalformedPacket, RtpHeader, parse_header
from sfu.stats import SfuCounters

logger = logging.getLogger(__name__)

ABS_SEND_TIME_MASK = 0xFFFFFF  # 24-bit, 6.18 fixed-point seconds
BURST_TICKS = (5 << 18) // 1000  # 5 ms in abs-send-time units: one inter-arrival group
REPORT_INTERVAL = 1.0  # s between receiver reports upstream
MAX_LEARNED_SSRCS = 32  # per publisher: 3 simulcast layers x (media + RTX) x a few sources
MAX_REPORT_BLOCKS = 31  # RFC 3550 §6.4: the report count is 5 bits
MIN_REMB_INTERVAL = 0.25  # s between two REMBs, however often the estimate moves


@dataclass(slots=True)
class _Route:
    producer: Producer
    layer: int
    rtx: bool


class PublisherIngress:
    """Routes one participant's incoming RTP to its producers and reports upstream."""

    def __init__(self, counters: SfuCounters) -> None:
        self._counters = counters
        self._connection: PublishConnection | None = None
        self._by_mid: dict[str, Producer] = {}
        self._routes: dict[int, _Route] = {}
        self._rtx_media_ssrc: dict[int, int] = {}
        # What was learned about the SSRCs of m-lines that stopped sending: by mid, the
        # SSRC's layer and whether it is RTX (see configure).
        self._remembered: dict[str, dict[int, tuple[int, bool]]] = {}
        self._mid_id = 0
        self._rid_id = 0
        self._repaired_rid_id = 0
        self._abs_send_time_id = 0
        self._audio_level_id = 0
        self._estimator = RemoteBitrateEstimator()
        # The burst of packets being summed before it goes to the estimator (see below).
        self._burst_first_send = -1
        self._burst_last_send = 0
        self._burst_arrival_ms = 0
        self._burst_bytes = 0
        self._burst_ssrc = 0
        self._last_remb = 0.0
        self._estimates: dict[str, int] = {}  # per mid, from abs-send-time
        self._report_task: asyncio.Task[None] | None = None
        self._logged_errors = 0

    def configure(self, connection: PublishConnection, tracks: list[IncomingTrack],
                  producers: dict[str, Producer]) -> None:
        """Adopt the m-lines of the latest offer/answer."""
        self._connection = connection
        ids = connection.extension_ids
        self._mid_id = ids.get(MID_URI, 0)
        self._rid_id = ids.get(RID_URI, 0)
        self._repaired_rid_id = ids.get(REPAIRED_RID_URI, 0)
        self._abs_send_time_id = ids.get(ABS_SEND_TIME_URI, 0)
        self._audio_level_id = ids.get(AUDIO_LEVEL_URI, 0)
        self._by_mid = dict(producers)
        # A simulcast m-line that goes inactive and active again (a camera turned off
        # and on) comes back on the same SSRCs, but the browser no longer names their
        # RIDs: what was learned is kept by mid and given to the m-line's next producer.
        kept = {}
        for ssrc, route in self._routes.items():
            mid = route.producer.mid
            if producers.get(mid) is route.producer:
                kept[ssrc] = route
            elif sum(map(len, self._remembered.values())) < MAX_LEARNED_SSRCS:
                self._remembered.setdefault(mid, {})[ssrc] = (route.layer, route.rtx)
        self._routes = kept
        for mid, successor in producers.items():
            for ssrc, (layer, rtx) in self._remembered.pop(mid, {}).items():
                if successor.simulcast and layer < len(successor.layers):
                    self._routes[ssrc] = _Route(successor, layer, rtx)
        for track in tracks:
            producer = producers.get(track.mid)
            if producer is None:
                continue
            if producer.simulcast:
                continue  # layers are known by their rid, never by a=ssrc
            for ssrc in track.media_ssrcs:
                self._routes[ssrc] = _Route(producer, 0, rtx=False)
            for rtx_ssrc, media_ssrc in track.rtx_ssrcs.items():
                self._routes[rtx_ssrc] = _Route(producer, 0, rtx=True)
                self._rtx_media_ssrc[rtx_ssrc] = media_ssrc
        if self._report_task is None:
            self._report_task = asyncio.ensure_future(self._report_loop())

    def on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        """One decrypted publisher packet, straight from the socket: must never raise."""
        try:
            self._ingest(data, arrival_time_ms)
        except Exception:
            self._counters.ingress_errors += 1
            if self._logged_errors < 10:
                self._logged_errors += 1
                logger.exception("dropping a publisher packet that broke the ingress")

    def _ingest(self, data: bytes, arrival_time_ms: int) -> None:
        counters = self._counters
        counters.rtp_packets_in += 1
        counters.rtp_bytes_in += len(data)
        try:
            header = parse_header(data)
        except MalformedPacket:
            counters.rtp_malformed += 1
            return
        route = self._routes.get(header.ssrc) or self._learn(header)
        if route is None:
            counters.rtp_unknown_ssrc += 1
            return
        producer = route.producer
        if route.rtx:
            unwrapped = self._unwrap_rtx(data, header, producer)
            if unwrapped is None:
                return
            data, header = unwrapped
        elif producer.kind == "video" and self._abs_send_time_id:
            self._estimate_bandwidth(header, arrival_time_ms)
        audio_level = header.extensions.get(self._audio_level_id) if self._audio_level_id else None
        producer.on_packet(route.layer, data, header, arrival_time_ms / 1000.0,
                           audio_level, retransmission=route.rtx)

    def _learn(self, header: RtpHeader) -> _Route | None:
        """Latch an unsignalled SSRC to its m-line by MID (else a payload type only one
        m-line owns) and to its layer by RID or repaired RID. Browsers stop sending
        these extensions once a receiver report acknowledges the SSRC, so the first
        packets decide for good."""
        producer = None
        raw_mid = header.extensions.get(self._mid_id) if self._mid_id else None
        if raw_mid:
            producer = self._by_mid.get(raw_mid.decode("ascii", "replace"))
        if producer is None:
            pt = header.payload_type
            owners = [p for p in self._by_mid.values()
                      if pt in p.codecs or pt in p.rtx_payload_types]
            producer = owners[0] if len(owners) == 1 else None
        if producer is None or len(self._routes) >= MAX_LEARNED_SSRCS:
            return None  # a hostile sender cannot make us track unbounded SSRCs
        layer: int | None = 0
        rtx = header.payload_type in producer.rtx_payload_types
        if producer.simulcast:
            rid = header.extensions.get(self._repaired_rid_id if rtx else self._rid_id)
            layer = producer.layer_for_rid(rid.decode("ascii", "replace")) if rid else None
        if layer is None:
            return None  # wait for a packet that names its layer
        if rtx:
            return self._learn_rtx(header.ssrc, producer, layer)
        route = _Route(producer, layer, rtx)
        self._routes[header.ssrc] = route
        return route

    def _learn_rtx(self, ssrc: int, producer: Producer, layer: int) -> _Route | None:
        media_ssrc = producer.media_ssrc(layer)
        if media_ssrc is None:
            return None  # cannot tell which stream this repairs yet
        self._rtx_media_ssrc[ssrc] = media_ssrc
        route = _Route(producer, layer, rtx=True)
        self._routes[ssrc] = route
        return route

    def _unwrap_rtx(self, data: bytes, header: RtpHeader,
                    producer: Producer) -> tuple[bytes, RtpHeader] | None:
        """RFC 4588 §4: original sequence number, then the original payload."""
        media_pt = producer.rtx_payload_types.get(header.payload_type)
        media_ssrc = self._rtx_media_ssrc.get(header.ssrc)
        if header.payload_size < 2 or media_pt is None or media_ssrc is None:
            self._counters.rtp_padding_dropped += 1  # padding-only bandwidth probe
            return None
        start = header.payload_start
        original_sequence = int.from_bytes(data[start:start + 2], "big")
        unwrapped = data[:start] + data[start + 2:]
        return unwrapped, RtpHeader(
            marker=header.marker,
            payload_type=media_pt,
            sequence_number=original_sequence,
            timestamp=header.timestamp,
            ssrc=media_ssrc,
            extensions=header.extensions,
            payload_start=start,
            payload_end=header.payload_end - 2,
        )

    def _estimate_bandwidth(self, header: RtpHeader, arrival_time_ms: int) -> None:
        """Feed the publisher's uplink estimator one entry per send burst, not per packet.

        aiortc's estimator groups packets sent within 5 ms anyway (inter-arrival
        groups) and only needs each group's last send and arrival times and its
        bytes; summing a burst here first makes its ~5 µs per call a cost per
        frame instead of per packet.
        """
        raw = header.extensions.get(self._abs_send_time_id)
        if raw is None or len(raw) != 3:
            return
        send = int.from_bytes(raw, "big")
        first = self._burst_first_send
        if first >= 0 and ((send - first) & ABS_SEND_TIME_MASK) < BURST_TICKS:
            self._burst_last_send = send
            self._burst_arrival_ms = arrival_time_ms
            self._burst_bytes += header.payload_size
            self._burst_ssrc = header.ssrc
            return
        if first >= 0:
            self._feed_estimator()
        self._burst_first_send = self._burst_last_send = send
        self._burst_arrival_ms = arrival_time_ms
        self._burst_bytes = header.payload_size
        self._burst_ssrc = header.ssrc

    def _feed_estimator(self) -> None:
        ssrc = self._burst_ssrc
        result = self._estimator.add(self._burst_arrival_ms, self._burst_last_send,
                                     self._burst_bytes, ssrc)
        if result is None:
            return
        route = self._routes.get(ssrc)
        if route is None:
            return
        bitrate, ssrcs = result
        producer = route.producer
        self._estimates[producer.mid] = bitrate
        now = time.monotonic()
        if now - self._last_remb >= MIN_REMB_INTERVAL:
            self._last_remb = now
            self._send_remb(producer, ssrcs)

    def _send_remb(self, producer: Producer, ssrcs: list[int]) -> None:
        """REMB upstream: the measured estimate, raised for simulcast to what subscribers want.

        Chrome adopts a REMB at once, so this is also how the SFU decides which
        simulcast layers a publisher encodes (no subscriber wants 720p: the
        publisher stops sending it).
        """
        if self._connection is None or not ssrcs:
            return
        bitrate = self._estimates.get(producer.mid, 0)
        if producer.simulcast:
            bitrate = producer.wanted_bitrate()
        if bitrate <= 0:
            return
        self._counters.remb_sent_upstream += 1
        task = asyncio.ensure_future(self._connection.send_remb(producer.mid, bitrate, ssrcs))
        task.add_done_callback(_ignore_result)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        route = self._routes.get(ssrc)
        if route is not None and not route.rtx:
            route.producer.on_sender_report(ssrc, ntp_timestamp, rtp_timestamp)

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            try:
                await self._send_reports()
            except Exception:
                logger.exception("receiver report failed")

    async def _send_reports(self) -> None:
        if self._connection is None:
            return
        now = time.time()
        for producer in list(self._by_mid.values()):
            producer.refresh_upstream_layers(time.monotonic())  # switch-offs after the hold
            blocks = []
            for layer in producer.layers:
                for ssrc, stats in layer.reception.items():
                    lsr = dlsr = 0
                    report = layer.sender_reports.get(ssrc)
                    if report is not None:
                        lsr = (report.ntp_timestamp >> 16) & 0xFFFFFFFF
                        dlsr = int((now - report.received_at) * 65536)
                    blocks.append((ssrc, stats.report(), lsr, dlsr))
            blocks = blocks[-MAX_REPORT_BLOCKS:]
            if producer.simulcast:
                self._send_remb(producer, [s for layer in producer.layers
                                           if (s := layer.ssrc) is not None])
            await self._connection.send_receiver_report(producer.mid, blocks)

    def close(self) -> None:
        if self._report_task is not None:
            self._report_task.cancel()
            self._report_task = None


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
