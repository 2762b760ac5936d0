"""A participant: its publish side (producers) and its subscribe side (consumers).

The subscribe connection is renegotiated by the SFU whenever the set of
sources this participant should receive changes. Only one offer is in flight
at a time; changes made meanwhile are folded into the next offer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from sfu.aiortc_bridge import (
    IceSettings,
    IncomingTrack,
    OutboundSlot,
    PublishConnection,
    SubscribeConnection,
)
from sfu.allocator import Candidate, LayerOption, SourceConstraints, allocate
from sfu.bandwidth import PADDING_BYTES, SubscriberBandwidth
from sfu.consumer import Consumer
from sfu.errors import InvalidSdp, StaleRevision
from sfu.gcc import ProbeCluster
from sfu.ingress import PublisherIngress
from sfu.payload import keyframe_test_for
from sfu.producer import Producer
from sfu.rtp import pack_extensions, padding_packet
from sfu.stats import SfuCounters
from sfu.subscriber_rtcp import SubscriberFeedback
from sfu.ticker import Ticker
from sfu.twcc import TRANSPORT_CC_URI

logger = logging.getLogger(__name__)

Event = dict[str, Any]
USABLE_AUDIO = {"audio/opus"}
TICK = 0.05  # seconds between two runs of the worker's periodic timer (sfu.ticker)
ALLOCATION_TICKS = 10  # 0.5 s between two allocations of a subscriber's bandwidth
PROBE_TICKS = 1  # 50 ms between two asks for a probe cluster while transport-cc flows
PROBE_IDLE_TICKS = 10  # 0.5 s between two looks while the subscriber sends no such feedback
MAX_PENDING_EVENTS = 1000  # events queued for a client that does not read them any more
REACT_INTERVAL = 0.2  # seconds: feedback reallocates at once, but not more often than this


class _ForwardedRate:
    """Video bitrate forwarded to one subscriber, from successive byte totals."""

    def __init__(self) -> None:
        self._octets = 0
        self._at = time.monotonic()
        self._bps = 0

    def bps(self, octets: int, now: float) -> int:
        if now - self._at >= 0.25:
            self._bps = int(max(0, octets - self._octets) * 8 / (now - self._at))
            self._octets, self._at = octets, now
        return self._bps


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Participant:
    """One person in a room, with their two peer connections."""

    def __init__(self, *, name: str, ice: IceSettings, counters: SfuCounters,
                 on_connection_failed: Callable[[Participant], None]) -> None:
        self.id = new_id("p")
        self.name = name
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.producers: dict[str, Producer] = {}  # by publish m-line mid
        self.consumers: dict[str, Consumer] = {}  # by source id
        self.closed = False
        self._ice = ice
        self._counters = counters
        self._on_connection_failed = on_connection_failed
        self._ingress = PublisherIngress(counters)
        self._publish: PublishConnection | None = None
        self._subscribe: SubscribeConnection | None = None
        self._wanted: dict[str, Producer] = {}
        self._revision = 0
        self._offer_pending = False
        self._dirty = False
        self._negotiation = asyncio.Lock()
        self.constraints: dict[str, SourceConstraints] = {}
        self.source_order: list[str] = []
        self.bandwidth = SubscriberBandwidth()
        self._forwarded = _ForwardedRate()
        self._ticker: Ticker | None = None  # the worker's timer, once media can flow
        self._stop_allocation: Callable[[], None] | None = None
        self._stop_probe_checks: Callable[[], None] | None = None
        self._probe_period = 0
        self._probing: asyncio.Task[None] | None = None
        self._last_allocation = 0.0
        self.active_speaker: str | None = None  # the room's dominant speaker (participant id)
        self._stalled = False

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    def emit(self, event: Event) -> None:
        """Queue an event for the client; a client that stopped reading is let go."""
        if self.closed or self._stalled:
            return
        if self.events.qsize() >= MAX_PENDING_EVENTS:
            # Its signaling socket no longer drains: holding more would grow without
            # limit. It leaves the room like a failed connection (it may rejoin).
            self._stalled = True
            self._counters.stalled_clients += 1
            self._on_connection_failed(self)
            return
        self.events.put_nowait(event)

    # ----------------------------------------------------------------- publishing

    async def publish(self, offer: str) -> tuple[str, list[Producer], list[Producer]]:
        """Apply a publish offer; returns the answer and the producers added and removed."""
        if self._publish is None:
            self._publish = PublishConnection(
                self._ice,
                on_rtp=self._ingress.on_rtp,
                on_sender_report=self._ingress.on_sender_report,
                on_state=self._connection_state,
                counters=self._counters,
            )
        try:
            answer, tracks = await self._publish.accept_offer(offer)
        except Exception as exc:
            if not self.producers:
                await self._publish.close()
                self._publish = None
            raise InvalidSdp(f"the publish offer was refused: {exc}") from exc
        return answer, *self._update_producers(tracks)

    def _update_producers(
            self, tracks: list[IncomingTrack]) -> tuple[list[Producer], list[Producer]]:
        assert self._publish is not None
        connection = self._publish
        usable = [t for t in tracks if _usable(t)]
        added = []
        for track in usable:
            if track.mid in self.producers:
                continue
            mid = track.mid
            producer = Producer(
                source_id=new_id("s"),
                participant_id=self.id,
                kind=track.kind,
                mid=mid,
                codecs=track.codecs,
                counters=self._counters,
                send_pli=functools.partial(connection.send_pli, mid),
                send_nack=functools.partial(connection.send_nack, mid),
                rids=track.rids,
            )
            producer.on_upstream_layers = self._tell_publish_layers
            self.producers[mid] = producer
            added.append(producer)
        live = {t.mid for t in usable}
        removed = [p for mid, p in self.producers.items() if mid not in live]
        for producer in removed:
            producer.close()
            del self.producers[producer.mid]
        self._ingress.configure(connection, usable, self.producers)
        return added, removed

    def _tell_publish_layers(self, producer: Producer, active: tuple[bool, ...]) -> None:
        self.emit({"type": "publish_layers", "source_id": producer.id, "mid": producer.mid,
                   "active": list(active)})

    # ----------------------------------------------------------------- subscribing

    async def set_wanted_sources(self, producers: list[Producer]) -> None:
        """The sources this participant should receive now; renegotiates if that changed."""
        self._wanted = {p.id: p for p in producers if not p.closed}
        await self.renegotiate()

    async def renegotiate(self) -> None:
        if self.closed:
            return
        if self._offer_pending:
            self._dirty = True
            return
        async with self._negotiation:
            if self._offer_pending or self.closed:
                self._dirty = True
                return
            if not self._reconcile_slots():
                return
            assert self._subscribe is not None
            sdp = await self._subscribe.create_offer()
            self._revision += 1
            self._offer_pending = True
            tracks = {}
            for slot in self._subscribe.slots:
                consumer = self.consumers.get(slot.source_id or "")
                tracks[slot.transceiver.mid] = consumer.producer.track_info() if consumer else None
            self.emit({"type": "subscribe_offer", "revision": self._revision, "sdp": sdp,
                       "tracks": tracks})

    def _reconcile_slots(self) -> bool:
        """Assign wanted sources to m-lines and idle the others; True if an offer is needed."""
        changed = False
        released: set[int] = set()
        for source_id, consumer in list(self.consumers.items()):
            if source_id not in self._wanted or consumer.producer.closed:
                consumer.close()
                consumer.slot.release()
                released.add(id(consumer.slot))
                del self.consumers[source_id]
                changed = True
        for source_id, producer in self._wanted.items():
            if source_id in self.consumers:
                continue
            slot = self._idle_slot(producer.kind, released)
            slot.assign(source_id, producer.participant_id)
            consumer = Consumer(producer, slot, self.id, self._counters, self.bandwidth)
            self.consumers[source_id] = consumer
            producer.add_consumer(consumer)
            changed = True
        return changed

    def _idle_slot(self, kind: str, released_now: set[int]) -> OutboundSlot:
        if self._subscribe is None:
            self._subscribe = SubscribeConnection(self._ice, self._on_feedback,
                                                  self._connection_state, self._counters,
                                                  self.bandwidth.on_transport_feedback)
        for slot in self._subscribe.slots:
            if slot.kind == kind and slot.source_id is None and id(slot) not in released_now:
                return slot
        return self._subscribe.add_slot(kind)

    async def accept_subscribe_answer(self, revision: int, answer: str) -> None:
        if not self._offer_pending or revision != self._revision or self._subscribe is None:
            raise StaleRevision(f"revision {revision} is not the pending subscribe offer "
                                f"(latest is {self._revision})")
        try:
            await self._subscribe.accept_answer(answer)
        except Exception as exc:
            raise InvalidSdp(f"the subscribe answer was refused: {exc}") from exc
        self._offer_pending = False
        for consumer in self.consumers.values():
            if not consumer.active and not consumer.closed:
                consumer.activate()
        if self._ticker is None:
            self._ticker = Ticker.for_loop(TICK)
            self._stop_allocation = self._ticker.every(ALLOCATION_TICKS, self.reallocate)
            self._check_probes_every(PROBE_IDLE_TICKS)
        self.reallocate()
        if self._dirty:
            self._dirty = False
            await self.renegotiate()

    def _on_feedback(self, slot: OutboundSlot, feedback: SubscriberFeedback) -> None:
        consumer = self.consumers.get(slot.source_id or "")
        if consumer is None:
            return
        if feedback.keyframe:
            self._counters.plis_received += 1
            consumer.request_keyframe()
        if feedback.lost:
            self._counters.nacks_received += 1
            consumer.retransmit(list(feedback.lost))
        if feedback.estimated_bitrate is not None:
            self.bandwidth.remb_bps = feedback.estimated_bitrate
        now = time.monotonic()
        if now - self._last_allocation >= REACT_INTERVAL:
            self.reallocate()  # losses and estimates act now, not at the next tick

    # ----------------------------------------------------------------- allocation

    def set_constraints(self, constraints: dict[str, SourceConstraints],
                        order: list[str]) -> None:
        """The subscriber's view: which tiles are visible, how tall, what is on stage."""
        self.constraints = constraints
        self.source_order = order
        self.reallocate()

    def allocation_stats(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "estimate_bps": self.bandwidth.estimate_bps,
            "send_side": self.bandwidth.send_side_active,
            "transport_feedback": self.bandwidth.feedback_reports,
            "budget_bps": self._budget(now),
            "congested": self.bandwidth.congested,
            "consumers": {c.producer.id: {"kind": c.producer.kind, "target": c.target_layer,
                                          "current": c.current_layer, "paused": c.paused,
                                          "active": c.active}
                          for c in self.consumers.values()},
        }

    def _check_probes_every(self, ticks: int) -> None:
        assert self._ticker is not None
        if self._stop_probe_checks is not None:
            self._stop_probe_checks()
        self._probe_period = ticks
        self._stop_probe_checks = self._ticker.every(ticks, self._probe_tick)

    def _probe_tick(self) -> None:
        """Start the estimator's next probe cluster when one is due.

        Without transport-cc feedback there is nothing to probe with: look
        rarely (at 20 Hz, per subscriber, it was a measurable share of an
        idle room), and often again as soon as feedback flows.
        """
        period = PROBE_TICKS if self.bandwidth.send_side_active else PROBE_IDLE_TICKS
        if period != self._probe_period:
            self._check_probes_every(period)
        if self._probing is not None and not self._probing.done():
            return
        probe = self.bandwidth.probe()
        if probe is None:
            return
        slot = self._probe_slot()
        if slot is not None:
            self._probing = asyncio.ensure_future(self._send_probe(slot, *probe))

    async def _send_probe(self, slot: OutboundSlot, cluster: ProbeCluster, count: int,
                          interval: float) -> None:
        """One probe cluster as padding on an RTX stream, paced at the cluster's bitrate."""
        try:
            for _ in range(count):
                slot.send_rtp(self._padding(slot, cluster.cluster_id))
                self._counters.probe_packets += 1
                await asyncio.sleep(interval)
        except Exception:
            logger.exception("probing failed for %s", self.id)

    def _probe_slot(self) -> OutboundSlot | None:
        """A sendonly video m-line with RTX: padding there is dropped by the browser unseen."""
        for consumer in self.consumers.values():
            slot = consumer.slot
            if consumer.active and slot.kind == "video" and slot.rtx_payload_types:
                return slot
        return None

    def _padding(self, slot: OutboundSlot, cluster_id: int) -> bytes:
        rtx_pt = next(iter(slot.rtx_payload_types.values()))
        sequence = slot.next_rtx_sequence
        slot.next_rtx_sequence = (sequence + 1) & 0xFFFF
        extensions = []
        transport_cc_id = slot.extension_ids.get(TRANSPORT_CC_URI, 0)
        if transport_cc_id:
            size = PADDING_BYTES + 32
            extensions.append((transport_cc_id, self.bandwidth.stamp(size, cluster_id)))
        return padding_packet(payload_type=rtx_pt, sequence_number=sequence,
                              timestamp=slot.last_timestamp, ssrc=slot.rtx_ssrc,
                              extension_block=pack_extensions(extensions),
                              padding=PADDING_BYTES)

    def set_active_speaker(self, participant_id: str) -> None:
        """The speaker's video is served right after what is on stage."""
        self.active_speaker = participant_id
        self.reallocate()

    def _budget(self, now: float) -> int:
        video = [c for c in self.consumers.values() if c.producer.kind == "video"]
        forwarded = self._forwarded.bps(sum(c.octets_sent for c in video), now)
        return self.bandwidth.budget(forwarded, sum(c.packets_sent for c in video),
                                     sum(c.packets_nacked for c in video), now)

    def reallocate(self) -> None:
        """Choose each video's layer within the budget; tell the subscriber what is paused."""
        now = time.monotonic()
        self._last_allocation = now
        video = [c for c in self.consumers.values()
                 if c.producer.kind == "video" and c.active and not c.closed]
        if not video:
            return
        rank = {source: i for i, source in enumerate(self.source_order)}
        video.sort(key=lambda c: (c.producer.participant_id != self.active_speaker,
                                  rank.get(c.producer.id, len(rank))))
        candidates = [
            Candidate(
                source_id=c.producer.id,
                # Every declared layer can be asked for: the publisher only sends the
                # high ones once the SFU's REMB says someone wants them.
                layers=tuple(
                    LayerOption(layer.index, layer.bitrate.bps(now), layer.height, True)
                    for layer in c.producer.layers),
                constraints=self.constraints.get(c.producer.id, SourceConstraints()),
                current_layer=None if c.paused else c.current_layer,
            )
            for c in video
        ]
        result = allocate(candidates, self._budget(now))
        for consumer in video:
            layer = result.layers.get(consumer.producer.id)
            if layer is None:
                if not consumer.paused:
                    consumer.pause()
                    self.emit({"type": "source_paused", "source_id": consumer.producer.id,
                               "reason": result.reasons.get(consumer.producer.id, "bandwidth")})
                continue
            consumer.set_target_layer(layer)
            if consumer.paused:
                consumer.resume()
                self.emit({"type": "source_resumed", "source_id": consumer.producer.id})

    # ----------------------------------------------------------------- lifecycle

    async def _connection_state(self, state: str) -> None:
        if state == "failed" and not self.closed:
            self._on_connection_failed(self)

    async def close(self) -> list[Producer]:
        """Stop everything; returns the producers that disappeared with this participant."""
        if self.closed:
            return []
        self.closed = True
        for stop in (self._stop_allocation, self._stop_probe_checks):
            if stop is not None:
                stop()
        if self._probing is not None:
            self._probing.cancel()
        producers = list(self.producers.values())
        for producer in producers:
            producer.close()
        for consumer in self.consumers.values():
            consumer.close()
        self.producers.clear()
        self.consumers.clear()
        self._ingress.close()
        for connection in (self._publish, self._subscribe):
            if connection is not None:
                try:
                    await connection.close()
                except Exception:
                    logger.exception("closing a peer connection failed")
        return producers


def _usable(track: IncomingTrack) -> bool:
    """An m-line the SFU can forward: Opus audio, or VP8 / H.264 video."""
    mimes = {c.mime_type for c in track.codecs.values() if c.rtx_for is None}
    if track.kind == "audio":
        return bool(mimes & USABLE_AUDIO)
    return any(keyframe_test_for(m) is not None for m in mimes)
