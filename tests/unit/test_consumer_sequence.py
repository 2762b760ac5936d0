"""A subscriber's sequence numbers have no hole the SFU cannot fill: padding-only probes
are folded in, and a stream never starts on a keyframe whose other packets went by."""

from __future__ import annotations

import types

from sfu.aiortc_bridge import ABS_SEND_TIME_URI, MID_URI, Codec
from sfu.bandwidth import SubscriberBandwidth
from sfu.consumer import Consumer
from sfu.producer import Producer
from sfu.rtp import pack_extensions, pack_header, parse_header
from sfu.stats import SfuCounters


class RecordingWire:
    """The subscriber's side of the socket: the sequence numbers that went out."""

    def __init__(self) -> None:
        self.sequences: list[int] = []

    def send(self, header: bytes | bytearray, payload: bytes | memoryview) -> bool:
        self.sequences.append(int.from_bytes(header[2:4], "big"))
        return True

    def send_rtp(self, packet: bytes) -> bool:
        """A retransmission: the whole packet at once."""
        return self.send(packet, b"")


def _slot(wire: RecordingWire) -> types.SimpleNamespace:
    """What an OutboundSlot carries once the subscriber's answer is in (no aiortc here)."""
    return types.SimpleNamespace(
        payload_types={"video/vp8": 96}, rtx_payload_types={}, ssrc=555, rtx_ssrc=0,
        next_sequence=1000, next_rtx_sequence=0, last_timestamp=0, last_sent_at=None,
        last_picture_id=None, last_tl0picidx=None, last_vp8=None, last_vp8_segment=None,
        wire=wire, send_rtp=wire.send_rtp, extension_ids={MID_URI: 1, ABS_SEND_TIME_URI: 2},
        mid="1", send_errors=0, kind="video")


def _packet(sequence: int, *, keyframe: bool = False, padding: bool = False) -> bytes:
    extensions = pack_extensions([(1, b"1")])
    header = pack_header(marker=False, payload_type=96, sequence_number=sequence,
                         timestamp=sequence * 3000, ssrc=1234, extension_block=extensions,
                         padded=padding)
    if padding:
        return header + bytes(199) + bytes((200,))
    vp8 = b"\x10\x9d\x01\x2a\x40\x01\xf0\x00" if keyframe else b"\x11\x00\x00"
    return header + b"\x10" + vp8 + bytes(500)


async def _stream(sequences: list[tuple[int, str]]) -> list[int]:
    return (await _consumer_fed(sequences))[1].sequences


async def _consumer_fed(sequences: list[tuple[int, str]]) -> tuple[Consumer, RecordingWire]:
    async def nothing(*_: object) -> None:
        return None

    counters = SfuCounters()
    producer = Producer(source_id="s", participant_id="p", kind="video", mid="1",
                        codecs={96: Codec(96, "video/vp8", 90000)}, counters=counters,
                        send_pli=nothing, send_nack=nothing)
    wire = RecordingWire()
    consumer = Consumer(producer, _slot(wire), "sub", counters,  # type: ignore[arg-type]
                        SubscriberBandwidth())
    consumer.activate()
    producer.add_consumer(consumer)
    for sequence, kind in sequences:
        data = _packet(sequence, keyframe=kind == "key", padding=kind == "pad")
        producer.on_packet(0, data, parse_header(data), sequence / 100, None)
    return consumer, wire


async def test_padding_in_the_stream_leaves_no_gap_for_the_subscriber() -> None:
    sent = await _stream([(10, "key"), (11, "media"), (12, "pad"), (13, "pad"), (14, "media"),
                          (15, "media")])
    assert sent == [1000, 1001, 1002, 1003]


async def test_a_reordered_padding_packet_is_not_folded_in() -> None:
    sent = await _stream([(10, "key"), (12, "media"), (11, "pad"), (13, "media")])
    assert sent == [1000, 1002, 1003]  # 11 stays a gap: the subscriber may NACK it


async def test_a_late_keyframe_start_does_not_start_the_stream_but_the_next_keyframe_does() -> None:
    # 10 is the first packet of a keyframe that arrives after 11 and 12 (a repair): starting
    # there would leave 11 and 12, dropped while waiting, as holes.
    sent = await _stream([(11, "media"), (12, "media"), (10, "key"), (13, "media"),
                          (20, "key"), (21, "media")])
    assert sent == [1000, 1001]


async def test_padding_is_not_folded_while_an_earlier_packet_awaits_its_repair() -> None:
    # 12 was lost upstream (the SFU NACKs it): folding the padding 14 would shift 15 onto
    # the number 12's repair must take.
    sent = await _stream([(10, "key"), (11, "media"), (13, "media"), (14, "pad"),
                          (15, "media"), (12, "media")])
    assert sent == [1000, 1001, 1003, 1005, 1002]


async def test_a_nack_counts_as_this_links_loss_only_for_a_packet_it_was_sent() -> None:
    """12 never reached the SFU (the publisher's link lost it): the subscriber sees the hole
    and NACKs it, but that is not its own link's loss, which would pause its video."""
    consumer, wire = await _consumer_fed([(10, "key"), (11, "media"), (13, "media")])
    assert wire.sequences == [1000, 1001, 1003]
    consumer.retransmit([1002])
    assert consumer.packets_nacked == 0
    assert consumer._counters.nack_misses == 1
    consumer.retransmit([1001])  # sent, and lost on the way to the subscriber
    assert consumer.packets_nacked == 1
    assert wire.sequences[-1] == 1001  # resent
    consumer.retransmit([1001])  # asked again at once: neither resent nor counted twice
    assert consumer.packets_nacked == 1


async def test_the_stream_goes_on_after_the_sequence_numbers_move_half_a_cycle() -> None:
    """Every packet once looked "older than the join point" when the publisher's numbers
    were 2^15 past it: 3.5 minutes into a 720p stream, video stopped for 3.5 minutes."""
    count = 0x8000 + 200
    sent = await _stream([(10, "key")] + [(10 + i, "media") for i in range(1, count)])
    assert len(sent) == count
    assert sent[-1] == (1000 + count - 1) & 0xFFFF


async def test_a_late_packet_from_before_the_start_is_not_forwarded() -> None:
    # 9 comes after the stream started on keyframe 10: the subscriber never had 8 or 9
    sent = await _stream([(10, "key"), (11, "media"), (9, "media"), (12, "media")])
    assert sent == [1000, 1001, 1002]
