"""Relaying a room's sources between two SFU workers (mediasoup's pipe-to-router).

A room too big for one worker has a *shard* on each worker that serves some of
its participants. Between two shards runs one :class:`PipeTransport`: a UDP
socket on 127.0.0.1 at each end. Each source published on one side is sent
over it **once**, all simulcast layers, and re-appears on the other side as an
ordinary :class:`~sfu.producer.Producer` owned by a :class:`RemoteMember`, so
that worker's consumers, allocators and keyframe logic serve it unchanged.

Datagrams are a 4-byte pipe header (kind, layer, source slot) and then the
publisher's decrypted RTP packet as it was received, or a small feedback body
going back: keyframe request (PLI), NACK with the lost sequence numbers, the
top layer the far side's consumers target (so the publisher encodes what
someone watches), or a sender report going forward. No ICE, DTLS or SRTP: both ends are processes of
one node talking over loopback, which nothing outside the machine can reach or
read (docs/ipc.md says more).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import TYPE_CHECKING, Any, cast

from sfu.aiortc_bridge import Codec
from sfu.packet_cache import PacketCache
from sfu.producer import Producer
from sfu.rtp import MalformedPacket, parse_header
from sfu.stats import SfuCounters

if TYPE_CHECKING:
    from sfu.consumer import Consumer
    from sfu.producer import MediaPacket, SenderReport
    from sfu.room import Room

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
HEADER = struct.Struct(">BBH")  # kind, layer, source slot
RTP, PLI, NACK, SENDER_REPORT, GONE, WANT = range(6)
NO_LAYER = 0xFF  # WANT: no consumer on the far side wants this source now
WANT_INTERVAL = 0.5  # s between two reports of the layers the far side's consumers target
RTP_FLAGS = struct.Struct(">BB")  # flags (bit 0: audio level present, bit 1: retransmission), level
SR_BODY = struct.Struct(">IQI")  # publisher SSRC, NTP timestamp, RTP timestamp
MAX_NACKED = 64  # sequence numbers per NACK datagram


class RemoteMember:
    """A participant served by another worker, as this worker's room sees them."""

    def __init__(self, participant_id: str, name: str) -> None:
        self.id = participant_id
        self.name = name
        self.producers: dict[str, Producer] = {}  # by source id

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


class PipeConsumer:
    """Sends one local producer's packets, every layer, to the other end of a pipe.

    It sits in ``Producer.consumers`` beside the real consumers and offers the
    same few members the producer uses (``forward``, ``on_sender_report``,
    ``close``, and the state read by ``wanted_bitrate``).
    """

    subscriber_id = "pipe"
    current_layer = None

    def __init__(self, producer: Producer, transport: PipeTransport, slot: int) -> None:
        self.producer = producer
        self.slot = slot
        self.active = True
        self.closed = False
        # Until the far side says what its consumers target (WANT): every layer.
        self.target_layer = len(producer.layers) - 1
        self.paused = False
        self._transport = transport
        self._sent = [PacketCache[bytes, bytes]() for _ in producer.layers]

    def skip(self, layer: int, ssrc: int, sequence_number: int) -> None:
        """A padding-only packet the source side drops. Not relayed: the far side's
        consumers see its number as a gap (known limitation, see Consumer.skip)."""

    def forward(self, packet: MediaPacket) -> int:
        """Relay one packet; 0 bytes *forwarded*: that counts at the far end's subscribers."""
        level = packet.audio_level
        flags = RTP_FLAGS.pack(1, level[0]) if level else RTP_FLAGS.pack(0, 0)
        head = HEADER.pack(RTP, packet.layer, self.slot) + flags
        self._sent[packet.layer].put(packet.header.sequence_number, head, packet.data)
        self._transport.send(head + packet.data)
        return 0

    def retransmit(self, layer: int, sequences: list[int]) -> None:
        """The far end missed these packets of one layer: send them again from the ring."""
        if not 0 <= layer < len(self._sent):
            return
        for sequence in sequences[:MAX_NACKED]:
            sent = self._sent[layer].get(sequence)
            if sent is not None:
                head, data = sent
                self._transport.send(head[:4] + bytes([head[4] | 2, head[5]]) + data)

    def far_side_wants(self, layer: int) -> None:
        """The highest layer the far side's consumers target: what the publisher must send
        for them (``Producer.wanted_bitrate`` and the upstream layer choice read it)."""
        self.paused = layer == NO_LAYER
        if not self.paused:
            self.target_layer = min(layer, len(self.producer.layers) - 1)

    def on_sender_report(self, ssrc: int, report: SenderReport) -> None:
        self._transport.send(HEADER.pack(SENDER_REPORT, 0, self.slot)
                             + SR_BODY.pack(ssrc, report.ntp_timestamp, report.rtp_timestamp))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.active = False
        self.producer.remove_consumer(cast("Consumer", self))
        self._transport.source_gone(self)


class PipedSource:
    """A source arriving through a pipe: the local producer and its publisher SSRCs' layers."""

    def __init__(self, producer: Producer, member: RemoteMember,
                 layer_of: dict[int, int]) -> None:
        self.producer = producer
        self.member = member
        self.layer_of = layer_of  # publisher SSRC -> layer index, learned from the packets


class PipeTransport(asyncio.DatagramProtocol):
    """One room's link to its shard on one other worker: sources both ways, feedback back."""

    def __init__(self, room: Room, counters: SfuCounters) -> None:
        self.room = room
        self._counters = counters
        self._udp: asyncio.DatagramTransport | None = None
        self._remote: tuple[str, int] | None = None
        self._outgoing: dict[str, PipeConsumer] = {}  # by source id
        self._by_slot: dict[int, PipeConsumer] = {}
        self._next_slot = 0
        self._incoming: dict[int, PipedSource] = {}  # by the sender's slot
        self._removals: set[asyncio.Task[None]] = set()
        self._wants: asyncio.Task[None] | None = None
        self.closed = False
        self.packets_received = 0

    # ----------------------------------------------------------------- socket

    async def open(self) -> int:
        """Bind the local end on loopback; returns its port for the other worker."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=(LOOPBACK, 0))
        self._udp = transport
        self._wants = asyncio.ensure_future(self._report_wants())
        return int(transport.get_extra_info("sockname")[1])

    def connect(self, port: int) -> None:
        self._remote = (LOOPBACK, port)

    def send(self, datagram: bytes) -> None:
        if self._udp is not None and self._remote is not None and not self.closed:
            self._udp.sendto(datagram, self._remote)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Handled right here, like a publisher's packets (the producer path is synchronous)."""
        if addr != self._remote or len(data) < HEADER.size or self.closed:
            return  # only the other worker's socket speaks on this port
        try:
            self._handle(data)
        except Exception:
            self._counters.ingress_errors += 1
            logger.exception("pipe datagram of room %s failed", self.room.id)

    def error_received(self, exc: Exception) -> None:
        logger.debug("pipe of room %s: %s", self.room.id, exc)

    # ----------------------------------------------------------------- sending side

    def send_source(self, producer: Producer) -> dict[str, Any] | None:
        """Start relaying ``producer``; its description for the other end, None if already."""
        if producer.id in self._outgoing or producer.closed:
            return None
        slot = self._next_slot
        self._next_slot = (slot + 1) & 0xFFFF
        pipe = PipeConsumer(producer, self, slot)
        self._outgoing[producer.id] = self._by_slot[slot] = pipe
        producer.add_consumer(cast("Consumer", pipe))
        codecs = [[c.payload_type, c.mime_type, c.clock_rate, c.rtx_for]
                  for c in producer.codecs.values()]
        return {"slot": slot, "source_id": producer.id, "participant_id": producer.participant_id,
                "kind": producer.kind, "rids": [layer.rid for layer in producer.layers],
                "codecs": codecs}

    def source_gone(self, pipe: PipeConsumer) -> None:
        self._outgoing.pop(pipe.producer.id, None)
        self._by_slot.pop(pipe.slot, None)
        self.send(HEADER.pack(GONE, 0, pipe.slot))

    # ----------------------------------------------------------------- receiving side

    async def receive_source(self, description: dict[str, Any]) -> None:
        """A source the other end will relay: a producer of its remote member, here."""
        member = self.room.remote.get(str(description["participant_id"]))
        slot = int(description["slot"])
        if member is None or slot in self._incoming:
            return
        rids = tuple(str(r) for r in description["rids"] if r is not None)
        codecs = {int(pt): Codec(int(pt), str(mime), int(clock),
                                 None if rtx is None else int(rtx))
                  for pt, mime, clock, rtx in description["codecs"]}
        layer_of: dict[int, int] = {}

        async def send_pli(ssrc: int) -> None:
            layer = layer_of.get(ssrc)
            if layer is not None:
                self.send(HEADER.pack(PLI, layer, slot))

        async def send_nack(ssrc: int, lost: list[int]) -> None:
            layer = layer_of.get(ssrc)
            if layer is not None:
                self.send(HEADER.pack(NACK, layer, slot)
                          + b"".join(s.to_bytes(2, "big") for s in lost[:MAX_NACKED]))

        producer = Producer(
            source_id=str(description["source_id"]), participant_id=member.id,
            kind=str(description["kind"]), mid=f"pipe-{slot}", codecs=codecs,
            counters=self._counters, send_pli=send_pli, send_nack=send_nack, rids=rids)
        source = self._incoming[slot] = PipedSource(producer, member, layer_of)
        member.producers[source.producer.id] = source.producer
        await self.room.sources_changed(member, [source.producer], [])

    def _handle(self, data: bytes) -> None:
        kind, layer, slot = HEADER.unpack_from(data)
        if kind == RTP:
            self._on_rtp(layer, slot, data)
        elif kind in (PLI, NACK):
            pipe = self._by_slot.get(slot)
            if pipe is None:
                return
            if kind == PLI:
                pipe.producer.request_keyframe(layer)
            else:
                count = (len(data) - HEADER.size) // 2
                lost = list(struct.unpack_from(f">{count}H", data, HEADER.size))
                pipe.retransmit(layer, lost)
        elif kind == SENDER_REPORT and len(data) >= HEADER.size + SR_BODY.size:
            source = self._incoming.get(slot)
            if source is not None:
                source.producer.on_sender_report(*SR_BODY.unpack_from(data, HEADER.size))
        elif kind == WANT:
            pipe = self._by_slot.get(slot)
            if pipe is not None:
                pipe.far_side_wants(layer)
        elif kind == GONE:
            task = asyncio.ensure_future(self._drop_incoming(slot))
            self._removals.add(task)
            task.add_done_callback(self._removals.discard)

    def _on_rtp(self, layer: int, slot: int, data: bytes) -> None:
        source = self._incoming.get(slot)
        offset = HEADER.size + RTP_FLAGS.size
        if (source is None or source.producer.closed or layer >= len(source.producer.layers)
                or len(data) < offset):
            return
        flags, level = RTP_FLAGS.unpack_from(data, HEADER.size)
        packet = data[offset:]
        try:
            header = parse_header(packet)
        except MalformedPacket:
            self._counters.rtp_malformed += 1
            return
        source.layer_of[header.ssrc] = layer
        self.packets_received += 1
        source.producer.on_packet(layer, packet, header, time.monotonic(),
                                  bytes([level]) if flags & 1 else None,
                                  retransmission=bool(flags & 2))

    async def _report_wants(self) -> None:
        """Tell the source side, per relayed source, the top layer consumers here target."""
        while not self.closed:
            await asyncio.sleep(WANT_INTERVAL)
            for slot, source in list(self._incoming.items()):
                targets = [c.target_layer for c in source.producer.consumers
                           if c.active and not c.paused]
                self.send(HEADER.pack(WANT, max(targets) if targets else NO_LAYER, slot))

    async def _drop_incoming(self, slot: int) -> None:
        source = self._incoming.pop(slot, None)
        if source is None:
            return
        producer = source.producer
        if source.member.producers.pop(producer.id, None) is None:
            return  # already gone with its member (Room.remove_remote)
        producer.close()
        await self.room.sources_changed(source.member, [], [producer])

    # ----------------------------------------------------------------- lifecycle

    async def close(self) -> None:
        """Stop relaying both ways; the sources that came through here leave the room."""
        if self.closed:
            return
        for pipe in list(self._outgoing.values()):
            pipe.close()
        for slot in list(self._incoming):
            await self._drop_incoming(slot)
        self.closed = True
        if self._wants is not None:
            self._wants.cancel()
        if self._udp is not None:
            self._udp.close()
