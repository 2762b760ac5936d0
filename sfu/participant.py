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
from collections.abc import Callable
from typing import Any

from sfu.aiortc_bridge import (
    IceSettings,
    IncomingTrack,
    OutboundSlot,
    PublishConnection,
    SubscribeConnection,
    SubscriberFeedback,
)
from sfu.consumer import Consumer
from sfu.errors import InvalidSdp, StaleRevision
from sfu.ingress import PublisherIngress
from sfu.payload import keyframe_test_for
from sfu.producer import Producer
from sfu.stats import SfuCounters

logger = logging.getLogger(__name__)

Event = dict[str, Any]
USABLE_AUDIO = {"audio/opus"}


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

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    def emit(self, event: Event) -> None:
        if not self.closed:
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
            self.producers[mid] = producer
            added.append(producer)
        live = {t.mid for t in usable}
        removed = [p for mid, p in self.producers.items() if mid not in live]
        for producer in removed:
            producer.close()
            del self.producers[producer.mid]
        self._ingress.configure(connection, usable, self.producers)
        return added, removed

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
            consumer = Consumer(producer, slot, self.id, self._counters)
            self.consumers[source_id] = consumer
            producer.add_consumer(consumer)
            changed = True
        return changed

    def _idle_slot(self, kind: str, released_now: set[int]) -> OutboundSlot:
        if self._subscribe is None:
            self._subscribe = SubscribeConnection(self._ice, self._on_feedback,
                                                  self._connection_state, self._counters)
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
        if self._dirty:
            self._dirty = False
            await self.renegotiate()

    async def _on_feedback(self, slot: OutboundSlot, feedback: SubscriberFeedback) -> None:
        consumer = self.consumers.get(slot.source_id or "")
        if consumer is None:
            return
        if feedback.keyframe:
            self._counters.plis_received += 1
            consumer.request_keyframe()
        if feedback.lost:
            self._counters.nacks_received += 1
            await consumer.retransmit(list(feedback.lost))

    # ----------------------------------------------------------------- lifecycle

    async def _connection_state(self, state: str) -> None:
        if state == "failed" and not self.closed:
            self._on_connection_failed(self)

    async def close(self) -> list[Producer]:
        """Stop everything; returns the producers that disappeared with this participant."""
        if self.closed:
            return []
        self.closed = True
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
