"""One source forwarded to one subscriber: all the rewriting state lives here.

The subscriber's decoder must see one continuous stream per m-line whatever
the SFU does upstream (a new publisher SSRC, a source swapped onto a recycled
m-line, packets dropped while waiting for a keyframe). The consumer keeps the
offsets that map publisher sequence numbers and timestamps to the
subscriber's, and rewrites each packet's header: SSRC, sequence number,
timestamp, payload type, header-extension ids, MID value and a fresh
abs-send-time.

``forward`` runs once per packet per subscriber, so it is synchronous and
patches a header laid out once per m-line (header_template.py) instead of
building one; the wire (srtp_wire.py) protects and sends it without a
coroutine. Retransmissions and the rare layouts the template cannot hold go
the general way (``_rewrite``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.aiortc_bridge import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, OutboundSlot
from sfu.bandwidth import SubscriberBandwidth
from sfu.header_template import FIXED_HEADER, TRANSPORT_CC_VALUE, HeaderLayout, layout_header
from sfu.packet_cache import PacketCache
from sfu.rtp import abs_send_time_now, pack_extensions, pack_header
from sfu.stats import SfuCounters
from sfu.twcc import TRANSPORT_CC_URI
from sfu.vp8 import Vp8Descriptor, rewrite_counters

if TYPE_CHECKING:
    from sfu.producer import MediaPacket, Producer, SenderReport

RETRANSMIT_HOLD_OFF = 0.05  # s: one NACKed packet is resent at most this often
MAX_REMEMBERED_RETRANSMISSIONS = 512
# s after a stream (re)starts during which a late packet is checked against the start point;
# sequence numbers wrap (65,536 packets: ~7 min of 720p), a repair comes within a second
JOIN_GUARD_S = 10.0


@dataclass(frozen=True, slots=True)
class _Segment:
    """The offsets of one stretch of forwarding (from one resync to the next)."""

    timestamp: int
    picture_id: int
    tl0picidx: int

    @property
    def renumbers_vp8(self) -> bool:
        return bool(self.picture_id or self.tl0picidx)


def _renumbered_vp8(packet: MediaPacket, vp8: Vp8Descriptor, segment: _Segment) -> bytes:
    """The payload (from the descriptor on) with picture id and TL0PICIDX continuing the
    subscriber's count. Subscribers that joined together share offsets, so the result is
    kept on the packet for the next consumer with the same ones."""
    key = (segment.picture_id, segment.tl0picidx)
    cache = packet.renumbered
    if cache is None:
        cache = packet.renumbered = {}
    else:
        done = cache.get(key)
        if done is not None:
            return done
    start = packet.header.payload_start
    payload = bytearray(packet.payload)
    picture_id = tl0 = None
    if vp8.picture_id is not None:
        picture_id = (vp8.picture_id + segment.picture_id) % (1 << vp8.picture_id_bits)
    if vp8.tl0picidx is not None:
        tl0 = (vp8.tl0picidx + segment.tl0picidx) & 0xFF
    rewrite_counters(payload, start, vp8, picture_id, tl0)
    result = cache[key] = bytes(payload)
    return result


def _settle_vp8_counters(slot: OutboundSlot) -> None:
    """Turn the last VP8 packet sent on the slot into its picture id / TL0PICIDX as the
    subscriber saw them (kept lazily: forward() only remembers the packet)."""
    vp8 = slot.last_vp8
    segment = slot.last_vp8_segment
    if vp8 is None or not isinstance(segment, _Segment):
        return
    if vp8.picture_id is not None:
        slot.last_picture_id = (vp8.picture_id + segment.picture_id) % (1 << vp8.picture_id_bits)
    if vp8.tl0picidx is not None:
        slot.last_tl0picidx = (vp8.tl0picidx + segment.tl0picidx) & 0xFF
    slot.last_vp8 = None


class Consumer:
    """Forwards one producer's packets to one subscriber's m-line."""

    def __init__(self, producer: Producer, slot: OutboundSlot, subscriber_id: str,
                 counters: SfuCounters, bandwidth: SubscriberBandwidth) -> None:
        self.producer = producer
        self.slot = slot
        self.subscriber_id = subscriber_id
        self.active = False  # set once the subscriber's answer made the m-line sendonly
        self.closed = False
        self.packets_sent = 0
        self.octets_sent = 0
        self.packets_nacked = 0  # distinct packets sent to the subscriber that it reported lost
        self._counters = counters
        self._bandwidth = bandwidth
        self._transport_cc_id = 0
        self.target_layer = 0  # the allocator moves it; the consumer follows on a keyframe
        self.current_layer: int | None = None
        self.paused = False
        self._source_ssrc: int | None = None
        self._first_sequence = 0
        self._started_at = 0.0  # ``MediaPacket.arrival`` of the packet the stream started on
        self._last_source_sequence = -1  # the publisher's number of the last packet handled
        self._sequence_offset = 0
        self._segment = _Segment(0, 0, 0)
        # What went out under each subscriber sequence number, so that a NACK is
        # answered exactly, even for packets of a layer forwarded before a switch.
        self._sent: PacketCache[MediaPacket, _Segment] = PacketCache()
        self._clock_rate = 90000 if producer.kind == "video" else 48000
        self._retransmitted_at: dict[int, float] = {}
        self._extension_ids: tuple[int, int, int] = (0, 0, 0)
        self._mid_value = b""
        self._layout: HeaderLayout | None = None  # None: build each header the general way
        self._header = bytearray()  # the layout's template, patched in place per packet
        self._sequencer = bandwidth.sequencer
        self._forwarding = False  # active and not paused: the one test forward() makes
        self._renumber = False  # the current segment rewrites VP8 picture ids
        self._abs_send_time_at = self._audio_level_at = self._transport_cc_at = 0
        self._audio_level_element = 0

    def __repr__(self) -> str:
        return f"Consumer({self.producer.id} -> {self.subscriber_id})"

    def activate(self) -> None:
        """The subscriber accepted the m-line: read its negotiated parameters and start."""
        slot = self.slot
        ids = slot.extension_ids
        self._extension_ids = (ids.get(MID_URI, 0), ids.get(ABS_SEND_TIME_URI, 0),
                               ids.get(AUDIO_LEVEL_URI, 0))
        self._mid_value = (slot.mid or "").encode()
        self._transport_cc_id = ids.get(TRANSPORT_CC_URI, 0)
        mid_id, abs_id, level_id = self._extension_ids
        self._layout = layout_header(
            mid_id=mid_id, mid=self._mid_value, abs_send_time_id=abs_id,
            audio_level_id=level_id if self.producer.kind == "audio" else 0,
            transport_cc_id=self._transport_cc_id)
        layout = self._layout
        if layout is not None:
            self._header = layout.new_buffer()
            self._abs_send_time_at = layout.abs_send_time_at
            self._audio_level_at = layout.audio_level_at
            self._audio_level_element = layout.audio_level_element
            self._transport_cc_at = layout.transport_cc_at
        self.active = True
        self._forwarding = not self.paused
        self.request_keyframe()

    def set_target_layer(self, layer: int) -> None:
        """Aim for ``layer``; the switch happens on its next keyframe, which is requested now."""
        if layer == self.target_layer:
            return
        self.target_layer = layer
        if layer != self.current_layer and self.active and not self.paused:
            self.producer.request_keyframe(layer)
            self.producer.refresh_upstream_layers(time.monotonic())  # an encoder may be off

    def pause(self) -> None:
        """Stop forwarding (tile hidden, or no bandwidth for even the lowest layer)."""
        self.paused = True
        self._forwarding = False

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._forwarding = self.active
            self.current_layer = None  # restart cleanly on a keyframe
            self.request_keyframe()

    def forward(self, packet: MediaPacket) -> int:
        """Send ``packet`` on if this subscriber should see it: the bytes sent, 0 if not.

        Runs once per packet per subscriber: attribute reads are kept few and
        everything the layout allows is precomputed (activate, _resync).
        """
        if not self._forwarding:
            return 0
        header = packet.header
        layer = packet.layer
        if layer != self.current_layer or header.ssrc != self._source_ssrc:
            # A switch to the target layer, the first packet, or a publisher restart:
            # video may only start on a keyframe of that layer.
            if layer != self.target_layer and layer != self.current_layer:
                return 0
            if self.producer.kind == "video" and not (packet.keyframe and packet.in_order):
                # A keyframe's first packet that comes late (a repair the publisher sent
                # after its NACK) would start the subscriber on a frame whose other
                # packets went by unforwarded: a hole nobody can fill. Wait for the next.
                self.producer.request_keyframe(layer)
                return 0
            self.current_layer = layer
            self._resync(packet)
        elif not packet.in_order and self._before_start(packet):
            return 0  # a late packet from before this subscriber's stream started
        slot = self.slot
        media_pt = slot.payload_types.get(packet.mime_type)
        if media_pt is None:
            return 0  # the subscriber did not accept this codec
        if packet.in_order:
            self._last_source_sequence = header.sequence_number
        sequence = (header.sequence_number + self._sequence_offset) & 0xFFFF
        segment = self._segment
        timestamp = (header.timestamp + segment.timestamp) & 0xFFFFFFFF
        vp8 = packet.vp8
        if self._renumber and vp8 is not None:
            payload: bytes | memoryview = _renumbered_vp8(packet, vp8, segment)
        else:
            payload = packet.payload
        buffer = self._header
        if self._layout is None:
            data = self._rewrite(packet, sequence, segment)
            sent = len(data) if data is not None and slot.send_rtp(data) else 0
        else:
            FIXED_HEADER.pack_into(buffer, 0, packet.first_byte, packet.marker_bit | media_pt,
                                   sequence, timestamp, slot.ssrc)
            at = self._abs_send_time_at
            if at:
                buffer[at:at + 3] = packet.abs_send_time
            at = self._audio_level_at
            if at:
                level = packet.audio_level
                if level is None:
                    buffer[at] = buffer[at + 1] = 0  # RFC 8285 padding: no level this time
                else:
                    buffer[at] = self._audio_level_element
                    buffer[at + 1] = level[0]
            size = len(buffer) + len(payload)
            at = self._transport_cc_at
            if at:
                # The ingest time stands for the send time: the few microseconds of
                # fan-out before this copy are the same for every packet of the stream.
                TRANSPORT_CC_VALUE.pack_into(
                    buffer, at, self._sequencer.next_sequence(packet.arrival_us, size + 16))
            sent = size if slot.wire.send(buffer, payload) else 0
            if not sent:
                slot.send_errors += 1
                self._counters.send_failures += 1
        self._sent.put(sequence, packet, segment)
        if 0 < ((sequence + 1 - slot.next_sequence) & 0xFFFF) < 0x8000:  # seq_newer
            slot.next_sequence = (sequence + 1) & 0xFFFF
        slot.last_timestamp = timestamp
        slot.last_sent_at = packet.arrival
        if vp8 is not None:
            slot.last_vp8 = vp8  # its counters are worked out at the next resync only
            slot.last_vp8_segment = segment
        if sent:
            self.packets_sent += 1
            self.octets_sent += sent
        return sent

    def skip(self, layer: int, ssrc: int, sequence_number: int) -> None:
        """The publisher's packet ``sequence_number`` is not forwarded (padding only): close
        the gap it would leave, so the subscriber sees no loss to wait for.

        Browsers probe their uplink with padding on the media SSRC; each probe takes a
        sequence number. Left as a hole, it is NACKed, can never be repaired, and a
        receiver whose jitter buffer waits for it (aiortc: until 128 packets later)
        freezes for seconds on a low layer. Folding shifts every later number by one, so
        it is only done for the packet right after the last one handled, and (the
        producer's part) only while no earlier packet is awaiting a repair from the
        publisher, whose number would then be mapped wrong. Otherwise it stays a hole.
        """
        if (self._forwarding and layer == self.current_layer and ssrc == self._source_ssrc
                and sequence_number == (self._last_source_sequence + 1) & 0xFFFF):
            self._last_source_sequence = sequence_number
            self._sequence_offset = (self._sequence_offset - 1) & 0xFFFF

    def _before_start(self, packet: MediaPacket) -> bool:
        """Whether a late packet (reordered, or a repair) precedes the stream's start point.

        Only late packets can, and only shortly after the start: compared with
        the start point for ever, every packet would look "older" once the
        publisher's numbers have moved 2^15 past it (3.5 minutes of 720p), and
        the subscriber's video would stop for the next 3.5 minutes.
        """
        if packet.arrival - self._started_at > JOIN_GUARD_S:
            return False
        return 0 < ((self._first_sequence - packet.header.sequence_number) & 0xFFFF) < 0x8000

    def _resync(self, packet: MediaPacket) -> None:
        slot = self.slot
        header = packet.header
        self._source_ssrc = header.ssrc
        self._first_sequence = header.sequence_number
        self._started_at = packet.arrival
        self._sequence_offset = (slot.next_sequence - header.sequence_number) & 0xFFFF
        base = slot.last_timestamp
        if slot.last_sent_at is not None:
            elapsed = time.monotonic() - slot.last_sent_at
            base += max(1, int(elapsed * self._clock_rate))
        timestamp_offset = (base - header.timestamp) & 0xFFFFFFFF
        _settle_vp8_counters(slot)
        picture_id_offset = tl0_offset = 0
        vp8 = packet.vp8
        if vp8 is not None and vp8.picture_id is not None and slot.last_picture_id is not None:
            modulus = 1 << vp8.picture_id_bits
            picture_id_offset = (slot.last_picture_id + 1 - vp8.picture_id) % modulus
        if vp8 is not None and vp8.tl0picidx is not None and slot.last_tl0picidx is not None:
            tl0_offset = (slot.last_tl0picidx + 1 - vp8.tl0picidx) & 0xFF
        self._segment = _Segment(timestamp_offset, picture_id_offset, tl0_offset)
        self._renumber = self._segment.renumbers_vp8
        report = self.producer.layers[packet.layer].sender_reports.get(header.ssrc)
        if report is not None:
            self.on_sender_report(header.ssrc, report)

    def _rewrite(self, packet: MediaPacket, sequence: int, segment: _Segment, *,
                 payload_type: int | None = None,
                 ssrc: int | None = None, rtx_sequence: int | None = None) -> bytes | None:
        """The packet as this subscriber sees it; RTX (RFC 4588) when ``rtx_sequence`` is set."""
        media_pt = self.slot.payload_types.get(packet.mime_type)
        if media_pt is None:
            return None  # the subscriber did not accept this codec
        header = packet.header
        mid_id, abs_id, level_id = self._extension_ids
        extensions: list[tuple[int, bytes]] = []
        if mid_id:
            extensions.append((mid_id, self._mid_value))
        if abs_id:
            extensions.append((abs_id, abs_send_time_now(time.time())))
        if level_id and packet.audio_level is not None:
            extensions.append((level_id, packet.audio_level))
        if self._transport_cc_id:
            size = len(packet.data) + 24  # close enough for the estimator: header grows by ~10
            extensions.append((self._transport_cc_id, self._bandwidth.stamp(size)))
        timestamp = (header.timestamp + segment.timestamp) & 0xFFFFFFFF
        payload: bytes | memoryview = packet.payload
        vp8 = packet.vp8
        if vp8 is not None and (segment.picture_id or segment.tl0picidx):
            payload = _renumbered_vp8(packet, vp8, segment)
        if rtx_sequence is None:
            return pack_header(
                marker=header.marker,
                payload_type=media_pt,
                sequence_number=sequence,
                timestamp=timestamp,
                ssrc=self.slot.ssrc,
                extension_block=pack_extensions(extensions),
                padded=header.payload_end < len(packet.data),
            ) + payload
        return pack_header(
            marker=header.marker,
            payload_type=payload_type if payload_type is not None else media_pt,
            sequence_number=rtx_sequence,
            timestamp=timestamp,
            ssrc=ssrc if ssrc is not None else self.slot.ssrc,
            extension_block=pack_extensions(extensions),
        ) + sequence.to_bytes(2, "big") + payload[:header.payload_size]

    def retransmit(self, lost: list[int]) -> None:
        """Answer a subscriber's NACK from the producer's cache, as RTX when negotiated."""
        if not self.active or self._source_ssrc is None:
            return
        now = time.monotonic()
        if len(self._retransmitted_at) > MAX_REMEMBERED_RETRANSMISSIONS:
            self._retransmitted_at.clear()
        for sequence in lost[:64]:
            previous = self._retransmitted_at.get(sequence)
            if previous is not None and now - previous < RETRANSMIT_HOLD_OFF:
                continue
            self._retransmitted_at[sequence] = now
            sent = self._sent.get(sequence)
            if sent is None:
                self._counters.nack_misses += 1
                continue  # never sent, or too old to be worth it
            if previous is None:
                # This subscriber's link lost it. A gap the publisher's link made (the SFU
                # never had the packet) is NACKed too, but must not pause this subscriber's
                # video as downlink congestion: with a lossy publisher, everyone's would.
                self.packets_nacked += 1
            packet, segment = sent
            data = self._retransmission(packet, sequence, segment)
            if data is None:
                continue
            self._counters.retransmissions += 1
            self._send(data)

    def _retransmission(self, packet: MediaPacket, sequence: int,
                        segment: _Segment) -> bytes | None:
        slot = self.slot
        media_pt = slot.payload_types.get(packet.mime_type)
        rtx_pt = slot.rtx_payload_types.get(media_pt) if media_pt is not None else None
        if rtx_pt is None or not slot.rtx_ssrc:
            return self._rewrite(packet, sequence, segment)
        rtx_sequence = slot.next_rtx_sequence
        slot.next_rtx_sequence = (rtx_sequence + 1) & 0xFFFF
        return self._rewrite(packet, sequence, segment, payload_type=rtx_pt,
                             ssrc=slot.rtx_ssrc, rtx_sequence=rtx_sequence)

    def _send(self, data: bytes) -> None:
        if self.slot.send_rtp(data):
            self.packets_sent += 1
            self.octets_sent += len(data)
            self._counters.rtp_packets_out += 1
            self._counters.rtp_bytes_out += len(data)
        else:
            self._counters.send_failures += 1

    def on_sender_report(self, ssrc: int, report: SenderReport) -> None:
        """Translate the publisher's NTP/RTP mapping into this subscriber's timestamps."""
        if ssrc != self._source_ssrc or not self.active:
            return
        self.slot.send_sender_report(
            report.ntp_timestamp,
            report.rtp_timestamp + self._segment.timestamp,
            self.packets_sent,
            self.octets_sent,
        )

    def request_keyframe(self) -> None:
        self.producer.request_keyframe(
            self.target_layer if self.current_layer is None else self.current_layer)

    def close(self) -> None:
        self.closed = True
        self.active = False
        self._forwarding = False
        self.producer.remove_consumer(self)
