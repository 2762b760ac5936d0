"""A subscriber's RTCP read by the SFU itself; packets built by aiortc's own encoder."""

from __future__ import annotations

import struct

import pytest
from aiortc import rtp as aiortc_rtp

from sfu.subscriber_rtcp import (
    MalformedRtcp,
    SubscriberFeedback,
    read_subscriber_rtcp,
)
from sfu.twcc import build_feedback, build_feedback_packet

SENDER = 0x11111111
MEDIA = 0x22222222
OTHER = 0x33333333


def receiver_report() -> bytes:
    block = aiortc_rtp.RtcpReceiverInfo(ssrc=MEDIA, fraction_lost=3, packets_lost=7,
                                        highest_sequence=1000, jitter=20, lsr=0, dlsr=0)
    return bytes(aiortc_rtp.RtcpRrPacket(ssrc=SENDER, reports=[block]))


def nack(lost: list[int]) -> bytes:
    packet = aiortc_rtp.RtcpRtpfbPacket(fmt=aiortc_rtp.RTCP_RTPFB_NACK, ssrc=SENDER,
                                        media_ssrc=MEDIA)
    packet.lost = lost
    return bytes(packet)


def remb(bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(aiortc_rtp.RtcpPsfbPacket(fmt=aiortc_rtp.RTCP_PSFB_APP, ssrc=SENDER,
                                           media_ssrc=0,
                                           fci=aiortc_rtp.pack_remb_fci(bitrate, ssrcs)))


def test_a_browser_like_compound_packet_is_read_in_order() -> None:
    twcc = build_feedback(42, 1, 0, [250, None, 750])
    compound = (receiver_report() + nack([5, 6, 9, 21, 40])
                + bytes(aiortc_rtp.RtcpPsfbPacket(fmt=aiortc_rtp.RTCP_PSFB_PLI, ssrc=SENDER,
                                                  media_ssrc=MEDIA))
                + remb(1_234_567, [MEDIA, OTHER])
                + build_feedback_packet(SENDER, 0, twcc))
    found = read_subscriber_rtcp(compound)
    assert found.transport_fcis == [twcc]
    lost, keyframe, estimate, other_estimate = found.feedback
    assert lost == (MEDIA, SubscriberFeedback(lost=(5, 6, 9, 21, 40)))
    assert keyframe == (MEDIA, SubscriberFeedback(keyframe=True))
    # REMB's 18-bit mantissa rounds what aiortc packed; it names both SSRCs
    bitrate, _ = aiortc_rtp.unpack_remb_fci(aiortc_rtp.pack_remb_fci(1_234_567, [MEDIA]))
    assert estimate == (MEDIA, SubscriberFeedback(estimated_bitrate=bitrate))
    assert other_estimate == (OTHER, SubscriberFeedback(estimated_bitrate=bitrate))


def test_nack_bitmasks_match_aiortcs_reading() -> None:
    lost = [3, 4, 17, 19, 20, 300, 301, 316, 317]
    packet = nack(lost)
    (_, feedback), = read_subscriber_rtcp(packet).feedback
    parsed = aiortc_rtp.RtcpPacket.parse(packet)[0]
    assert sorted(feedback.lost) == sorted(parsed.lost) == lost


def test_nack_bitmask_wraps_with_the_sequence_number() -> None:
    entry = struct.pack("!HH", 65534, 0b101)  # 65534, then 65535 and 1
    packet = bytes([0x81, 205]) + struct.pack("!HII", 3, SENDER, MEDIA) + entry
    assert read_subscriber_rtcp(packet).feedback == [(MEDIA, SubscriberFeedback(
        lost=(65534, 65535, 1)))]


def test_fir_names_its_ssrcs_in_the_entries() -> None:
    entries = struct.pack("!IB3x", MEDIA, 1) + struct.pack("!IB3x", OTHER, 7)
    packet = bytes([0x84, 206]) + struct.pack("!HII", (12 + len(entries)) // 4 - 1, SENDER, 0)
    found = read_subscriber_rtcp(packet + entries)
    assert found.feedback == [(MEDIA, SubscriberFeedback(keyframe=True)),
                              (OTHER, SubscriberFeedback(keyframe=True))]


def test_reports_alone_ask_for_nothing() -> None:
    sdes = bytes(aiortc_rtp.RtcpSdesPacket(chunks=[aiortc_rtp.RtcpSourceInfo(
        ssrc=SENDER, items=[(1, b"cname")])]))
    found = read_subscriber_rtcp(receiver_report() + sdes)
    assert found.feedback == [] and found.transport_fcis == []


def test_padded_transport_feedback() -> None:
    body = build_feedback(1, 0, 0, [250])
    packet = build_feedback_packet(1, 2, body) + b"\x00\x00\x00\x04"
    packet = (bytes([packet[0] | 0x20, packet[1]]) + struct.pack("!H", len(packet) // 4 - 1)
              + packet[4:])
    assert read_subscriber_rtcp(packet).transport_fcis == [body]


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # nothing
        b"\x8f\xcd\x00",  # header cut
        b"\x8f\xcd\x00\x05" + b"\x00" * 8,  # length beyond the data
        b"\x4f\xcd\x00\x00",  # version 1
        b"\x8f\xcd\x00\x01" + b"\x00" * 4,  # shorter than the two SSRCs
        b"\xaf\xcd\x00\x02" + b"\x00" * 8,  # padding bit, padding count 0
        b"\x81\xcd\x00\x02" + b"\x00" * 8,  # a NACK without entries
        b"\x84\xce\x00\x03" + b"\x00" * 12,  # a FIR entry cut to 4 bytes
        # a REMB that names 3 SSRCs and carries 1
        b"\x8f\xce\x00\x05" + b"\x00" * 8 + b"REMB" + bytes([3, 0, 0, 1]) + b"\x00" * 4,
    ],
)
def test_unreadable_rtcp_is_refused_as_a_whole(raw: bytes) -> None:
    with pytest.raises(MalformedRtcp):
        read_subscriber_rtcp(raw)
    with pytest.raises(MalformedRtcp):  # a good report before it does not make it readable
        read_subscriber_rtcp(receiver_report() + raw if raw else b"\x80")
