"""The publisher's uplink estimate (REMB upstream) from bursts of abs-send-time stamped packets.

The ingress sums each send burst before aiortc's estimator sees it; these traces
check that the estimate still follows the stream and still sees congestion.
"""

from __future__ import annotations

from sfu.aiortc_bridge import ABS_SEND_TIME_URI, MID_URI, Codec, IncomingTrack
from sfu.ingress import PublisherIngress
from sfu.producer import Producer
from sfu.rtp import abs_send_time_now, pack_extensions, pack_header
from sfu.stats import SfuCounters

FPS = 30
PACKETS_PER_FRAME = 5
PAYLOAD = 1000  # bytes: 5 x 1000 B x 30 fps = 1.2 Mbit/s
NTP_MS = 3_900_000_000_000  # arrival times are NTP milliseconds, like aiortc's


class RecordingConnection:
    """Stands in for the publisher's peer connection: the REMBs are what we look at."""

    extension_ids = {MID_URI: 1, ABS_SEND_TIME_URI: 2}

    def __init__(self) -> None:
        self.rembs: list[int] = []

    async def send_remb(self, mid: str, bitrate: int, ssrcs: list[int]) -> None:
        self.rembs.append(bitrate)

    async def send_pli(self, mid: str, ssrc: int) -> None:
        return None

    async def send_nack(self, mid: str, ssrc: int, lost: list[int]) -> None:
        return None

    async def send_receiver_report(self, mid: str, blocks: object) -> None:
        return None


def _ingress() -> PublisherIngress:
    counters = SfuCounters()
    codecs = {96: Codec(96, "video/vp8", 90000)}
    producer = Producer(source_id="s", participant_id="p", kind="video", mid="1", codecs=codecs,
                        counters=counters, send_pli=RecordingConnection().send_pli,
                        send_nack=RecordingConnection().send_nack)
    ingress = PublisherIngress(counters)
    ingress.configure(RecordingConnection(), [IncomingTrack("1", "video", codecs, [1234])],  # type: ignore[arg-type]
                      {"1": producer})
    return ingress


def _play(ingress: PublisherIngress, start_s: int, seconds: int,
          queue_growth_ms_per_frame: float) -> None:
    """Frames sent every 33 ms; each arrives later than the last by the queue growth."""
    for frame in range(start_s * FPS, (start_s + seconds) * FPS):
        seq = frame * PACKETS_PER_FRAME
        sent_s = frame / FPS
        queued = max(0, frame - start_s * FPS) * queue_growth_ms_per_frame
        arrival_ms = NTP_MS + sent_s * 1000 + 20 + queued
        for index in range(PACKETS_PER_FRAME):
            extensions = pack_extensions([(1, b"1"), (2, abs_send_time_now(sent_s + index * 1e-4))])
            packet = pack_header(marker=index == PACKETS_PER_FRAME - 1, payload_type=96,
                                 sequence_number=seq & 0xFFFF, timestamp=frame * 3000,
                                 ssrc=1234, extension_block=extensions)
            ingress.on_rtp(packet + b"\x10\x00\x00\x00" + bytes(PAYLOAD - 4),
                           int(arrival_ms + index * 0.2))
            seq += 1


async def test_a_clear_uplink_is_estimated_near_what_the_publisher_sends() -> None:
    ingress = _ingress()
    _play(ingress, 0, 20, queue_growth_ms_per_frame=0.0)
    sent_bps = FPS * PACKETS_PER_FRAME * PAYLOAD * 8
    assert sent_bps * 0.8 <= ingress._estimates["1"] <= sent_bps * 4


async def test_a_growing_queue_brings_the_estimate_below_what_is_sent() -> None:
    ingress = _ingress()
    _play(ingress, 0, 10, queue_growth_ms_per_frame=0.0)
    clear = ingress._estimates["1"]
    _play(ingress, 10, 5, queue_growth_ms_per_frame=3.0)  # +90 ms of queue per second
    sent_bps = FPS * PACKETS_PER_FRAME * PAYLOAD * 8
    assert ingress._estimates["1"] < min(clear, sent_bps)
