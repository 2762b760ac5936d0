"""A published source: one microphone, camera or screen of one participant.

The producer owns what is shared by every subscriber of the source: the
reception statistics reported upstream, the holes to NACK, the packet cache
that answers subscribers' NACKs, the last sender report (lip sync) and the
throttled keyframe requests. It never looks inside a frame beyond the few
bytes that say "keyframe starts here".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.keyframe_requests import KeyframeRequester
from sfu.packet_cache import PacketCache
from sfu.payload import keyframe_test_for
from sfu.reception import NackTracker, ReceptionStats
from sfu.rtp import RtpHeader
from sfu.stats import SfuCounters

if TYPE_CHECKING:
    from sfu.aiortc_bridge import Codec
    from sfu.consumer import Consumer

logger = logging.getLogger(__name__)

MAX_STREAMS = 8  # SSRCs tracked per source: a restart or simulcast layers, never more


@dataclass(slots=True)
class MediaPacket:
    """One publisher packet as every consumer sees it (RTX already unwrapped)."""

    data: bytes
    header: RtpHeader
    mime_type: str
    keyframe: bool
    audio_level: bytes | None


@dataclass(slots=True)
class SenderReport:
    ntp_timestamp: int
    rtp_timestamp: int


class Producer:
    """One published track and the consumers it fans out to."""

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
    ) -> None:
        self.id = source_id
        self.participant_id = participant_id
        self.kind = kind
        self.mid = mid
        self.codecs = {pt: c for pt, c in codecs.items() if c.rtx_for is None}
        self.rtx_payload_types = {pt: c.rtx_for for pt, c in codecs.items() if c.rtx_for}
        self.consumers: list[Consumer] = []
        self.cache: PacketCache[MediaPacket] = PacketCache()
        self.reception: dict[int, ReceptionStats] = {}
        self.nacks: dict[int, NackTracker] = {}
        self.sender_reports: dict[int, SenderReport] = {}
        self.sender_report_times: dict[int, float] = {}
        self.media_ssrc: int | None = None
        self.closed = False
        self._counters = counters
        self._send_nack = send_nack
        self._keyframes = KeyframeRequester(self._request_keyframe_upstream)
        self._send_pli = send_pli

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "participant_id": self.participant_id, "kind": self.kind}

    def track_info(self) -> dict[str, str]:
        """What a subscriber is told about the m-line carrying this source."""
        return {"source_id": self.id, "participant_id": self.participant_id, "kind": self.kind}

    async def on_packet(self, data: bytes, header: RtpHeader, arrival: float,
                        audio_level: bytes | None) -> None:
        """Account for one decrypted media packet and forward it to every consumer."""
        codec = self.codecs.get(header.payload_type)
        if codec is None:
            self._counters.rtp_dropped_unknown_payload += 1
            return
        ssrc = header.ssrc
        self.media_ssrc = ssrc
        stats = self.reception.get(ssrc)
        if stats is None:
            if len(self.reception) >= MAX_STREAMS:
                oldest = next(iter(self.reception))
                del self.reception[oldest], self.nacks[oldest]
            stats = self.reception[ssrc] = ReceptionStats(codec.clock_rate)
            self.nacks[ssrc] = NackTracker()
        stats.add(header.sequence_number, header.timestamp, arrival)
        if self.kind == "video" and self.nacks[ssrc].add(header.sequence_number):
            lost = sorted(self.nacks[ssrc].missing)
            self._counters.nacks_sent_upstream += 1
            await self._send_nack(ssrc, lost)
        if header.payload_size == 0:
            self._counters.rtp_padding_dropped += 1
            return
        keyframe = False
        if self.kind == "video":
            test = keyframe_test_for(codec.mime_type)
            keyframe = test is not None and test(data, header.payload_start, header.payload_end)
            if keyframe:
                self._keyframes.keyframe_received()
        packet = MediaPacket(
            data=data,
            header=header,
            mime_type=codec.mime_type,
            keyframe=keyframe,
            audio_level=audio_level,
        )
        self.cache.put(header.sequence_number, packet)
        for consumer in self.consumers:
            try:
                await consumer.forward(packet)
            except Exception:
                self._counters.consumer_errors += 1
                logger.exception("consumer %s failed; the publisher is unaffected", consumer)

    def on_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int) -> None:
        report = SenderReport(ntp_timestamp, rtp_timestamp)
        self.sender_reports[ssrc] = report
        self.sender_report_times[ssrc] = time.time()
        for consumer in self.consumers:
            consumer.on_sender_report(ssrc, report)

    def request_keyframe(self) -> None:
        """A subscriber needs a keyframe; the requester folds bursts into one PLI."""
        if self.kind == "video" and not self.closed:
            self._keyframes.request()

    async def _request_keyframe_upstream(self) -> None:
        if self.media_ssrc is not None and not self.closed:
            self._counters.plis_sent_upstream += 1
            await self._send_pli(self.media_ssrc)

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def close(self) -> None:
        self.closed = True
        self._keyframes.close()
        for consumer in list(self.consumers):
            consumer.close()
        self.consumers.clear()
