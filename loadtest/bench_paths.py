"""``visio bench paths``: the SFU's per-packet Python cost, without sockets or crypto.

``visio bench forward`` measures the whole server on loopback, where the
kernel's UDP delivery and SRTP take most of each forwarded packet's cost. This
bench runs the real ingest and fan-out code (``PublisherIngress`` →
``Producer`` → ``Consumer``) on a synthetic VP8 stream, in this process, with
the wire replaced by a counter, so that a change to the Python hot path shows
as a number of its own (µs of CPU per ingested packet and per copy), steady
from run to run. Both figures are medians of ``repeats`` passes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import types
from dataclasses import asdict, dataclass
from typing import Any

from sfu.aiortc_bridge import ABS_SEND_TIME_URI, MID_URI, Codec, IncomingTrack
from sfu.bandwidth import SubscriberBandwidth
from sfu.consumer import Consumer
from sfu.ingress import PublisherIngress
from sfu.producer import Producer
from sfu.rtp import abs_send_time_now, pack_extensions, pack_header
from sfu.stats import SfuCounters
from sfu.twcc import TRANSPORT_CC_URI

FRAME_PACKETS = 10  # a 640x480 VP8 frame at 1.5 Mbit/s and 30 fps is about 6-10 packets
KEYFRAME_EVERY = 300  # packets
NTP_MS = 3_900_000_000_000


@dataclass
class PathsResult:
    packets: int
    subscribers: int
    ingest_us_per_packet: float  # parse, route, estimate, statistics: no consumer
    copy_us_per_forwarded_packet: float  # one subscriber's share of the fan-out
    transport_cc: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _CountingWire:
    """Stands where the SRTP wire would: the bench measures the Python around it."""

    sent = 0

    def send(self, header: bytes | bytearray, payload: bytes | memoryview) -> bool:
        self.sent += 1
        return True


class _QuietConnection:
    """The publisher's connection, as the ingress sees it: RTCP goes nowhere."""

    extension_ids = {MID_URI: 1, ABS_SEND_TIME_URI: 2}

    async def send_remb(self, *_: object) -> None:
        return None

    async def send_receiver_report(self, *_: object) -> None:
        return None


def synthetic_stream(count: int) -> list[tuple[bytes, int]]:
    """VP8 packets with MID and abs-send-time, in frames, with their arrival times."""
    packets = []
    picture_id = 0
    for index in range(count):
        frame, position = divmod(index, FRAME_PACKETS)
        keyframe = index % KEYFRAME_EVERY == 0
        start = position == 0
        descriptor = bytes([0x90 if start else 0x80, 0x80,
                            0x80 | (picture_id >> 8), picture_id & 0xFF])
        if start:
            picture_id = (picture_id + 1) & 0x7FFF
        vp8 = b"\x10\x9d\x01\x2a\x80\x02\xe0\x01" if keyframe else b"\x11\x00\x00"
        sent_s = frame / 30 + position * 1e-4
        extensions = pack_extensions([(1, b"1"), (2, abs_send_time_now(sent_s))])
        header = pack_header(marker=position == FRAME_PACKETS - 1, payload_type=96,
                             sequence_number=index & 0xFFFF, timestamp=frame * 3000 & 0xFFFFFFFF,
                             ssrc=1234, extension_block=extensions)
        packets.append((header + descriptor + vp8 + bytes(1100),
                        int(NTP_MS + sent_s * 1000 + 20)))
    return packets


def _slot(transport_cc: bool) -> types.SimpleNamespace:
    """A subscriber's negotiated m-line, as the consumer reads it."""
    ids = {MID_URI: 1, ABS_SEND_TIME_URI: 2}
    if transport_cc:
        ids[TRANSPORT_CC_URI] = 5
    return types.SimpleNamespace(
        payload_types={"video/vp8": 96}, rtx_payload_types={96: 97}, ssrc=555, rtx_ssrc=556,
        next_sequence=100, next_rtx_sequence=5, last_timestamp=0, last_sent_at=None,
        last_picture_id=None, last_tl0picidx=None, last_vp8=None, last_vp8_segment=None,
        wire=_CountingWire(), extension_ids=ids, mid="1", send_errors=0, kind="video")


async def _pass(stream: list[tuple[bytes, int]], subscribers: int, transport_cc: bool) -> float:
    """CPU seconds for one pass of the stream through a fresh ingress and producer."""
    async def nothing(*_: object) -> None:
        return None

    counters = SfuCounters()
    codecs = {96: Codec(96, "video/vp8", 90000), 97: Codec(97, "video/rtx", 90000, rtx_for=96)}
    producer = Producer(source_id="s", participant_id="p", kind="video", mid="1", codecs=codecs,
                        counters=counters, send_pli=nothing, send_nack=nothing)
    ingress = PublisherIngress(counters)
    ingress.configure(_QuietConnection(), [IncomingTrack("1", "video", codecs, [1234])],  # type: ignore[arg-type]
                      {"1": producer})
    for index in range(subscribers):
        consumer = Consumer(producer, _slot(transport_cc), f"sub{index}",  # type: ignore[arg-type]
                            counters, SubscriberBandwidth())
        consumer.activate()
        producer.add_consumer(consumer)
    on_rtp = ingress.on_rtp
    started = time.process_time()
    for data, arrival_ms in stream:
        on_rtp(data, arrival_ms)
    elapsed = time.process_time() - started
    ingress.close()
    if counters.ingress_errors or counters.consumer_errors:
        raise RuntimeError(f"the synthetic stream broke the SFU: {counters.as_dict()}")
    if subscribers and counters.rtp_packets_out < len(stream) * subscribers * 0.99:
        raise RuntimeError(f"only {counters.rtp_packets_out} copies went out")
    return elapsed


def run_paths(packets: int = 20_000, subscribers: int = 50, repeats: int = 5,
              transport_cc: bool = True) -> PathsResult:
    stream = synthetic_stream(packets)

    async def measure() -> PathsResult:
        alone = [await _pass(stream, 0, transport_cc) for _ in range(repeats)]
        fanned = [await _pass(stream, subscribers, transport_cc) for _ in range(repeats)]
        ingest = statistics.median(alone)
        fan_out = statistics.median(fanned)
        return PathsResult(
            packets=packets, subscribers=subscribers, transport_cc=transport_cc,
            ingest_us_per_packet=ingest * 1e6 / packets,
            copy_us_per_forwarded_packet=(fan_out - ingest) * 1e6 / (packets * subscribers)
            if subscribers else float("nan"))

    return asyncio.run(measure())
