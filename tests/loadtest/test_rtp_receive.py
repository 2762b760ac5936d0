"""The light client's receive path on real SRTP (libsrtp through pylibsrtp), without a server.

Packets are built and protected here as a sender would; ``DirectReceive``
must authenticate, decrypt and count them exactly: loss and NACKs from gaps,
wraps of the sequence number, transport-cc arrivals, VP8 key frames,
frames and freezes, and the receiver-report figures aiortc's RTCP loop reads.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pylibsrtp
import pytest
import uvloop
from aiortc.rtp import RtcpPacket, RtcpRrPacket

from loadtest import receive_ceiling
from loadtest.rtp_receive import (
    NACK_RETRIES,
    NACK_RETRY_TICKS,
    ReceivedStream,
    RtpCounter,
    _vp8_key_frame_bit,
)
from loadtest.srtp_socket import DirectReceive
from sfu.twcc import parse_feedback
from sfu.vp8 import parse_descriptor

VIDEO_SSRC = 0x1234
TWCC_ID = 5
KEYFRAME_PAYLOAD = (b"\x10"  # VP8 descriptor: S=1, PID=0
                    + b"\x50\x01\x00" + b"\x9d\x01\x2a"  # key frame tag, start code
                    + (640).to_bytes(2, "little") + (360).to_bytes(2, "little") + b"\x00" * 50)
DELTA_PAYLOAD = b"\x10" + b"\x51\x01\x00" + b"\x00" * 80  # S=1, inter frame


def rtp(seq: int, timestamp: int, payload: bytes, *, marker: bool = False,
        twcc: int | None = None, ssrc: int = VIDEO_SSRC, payload_type: int = 96) -> bytes:
    extension = b""
    first = 0x80
    if twcc is not None:
        first |= 0x10
        element = bytes([TWCC_ID << 4 | 1]) + twcc.to_bytes(2, "big") + b"\x00"
        extension = b"\xbe\xde" + (len(element) // 4).to_bytes(2, "big") + element
    header = struct.pack("!BBHII", first, payload_type | (0x80 if marker else 0), seq,
                         timestamp, ssrc)
    return header + extension + payload


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A counter behind DirectReceive, with the sending side's SRTP session."""

    def __init__(self) -> None:
        key = os.urandom(30)
        tx = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        rx = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        self.sender = pylibsrtp.Session(tx)
        self.clock = Clock()
        self.marks: list[str] = []
        self.counter = RtpCounter(self.new_stream, self.marks.append, self.clock)
        self.counter.twcc_id = TWCC_ID
        self.passed_on: list[bytes] = []
        self.direct = DirectReceive(pylibsrtp.Session(rx), self.counter, self.fallback)

    def new_stream(self, ssrc: int, payload_type: int) -> ReceivedStream:
        return ReceivedStream(ssrc, "video", "0", 90000, rtx=payload_type == 97, vp8=True)

    def fallback(self, data: bytes, addr: Any) -> None:
        self.passed_on.append(data)

    def send(self, packet: bytes, at: float | None = None) -> None:
        if at is not None:
            self.clock.now = at
        self.direct.datagram_received(self.sender.protect(packet), ("127.0.0.1", 9))


def test_counts_decrypts_and_finds_key_frames() -> None:
    receiver = Receiver()
    receiver.send(rtp(10, 0, KEYFRAME_PAYLOAD, marker=True, twcc=1), at=100.0)
    for index in range(1, 30):
        receiver.send(rtp(10 + index, 3000 * index, DELTA_PAYLOAD, marker=True, twcc=1 + index),
                      at=100.0 + index / 30)
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert receiver.counter.direct == receiver.counter.packets == 30
    assert (stream.packets_received, stream.packets_expected, stream.lost) == (30, 30, 0)
    assert stream.resolution == (640, 360) and stream.keyframes == 1  # the payload was decrypted
    assert stream.frames == 30 and stream.freezes == 0
    assert stream.jitter < 5  # arrivals exactly on the 30 fps clock
    assert receiver.marks[:2] == ["first_rtp", "first_keyframe"]
    assert receiver.counter.octets == sum(len(rtp(10 + i, 0, DELTA_PAYLOAD, twcc=1))
                                          for i in range(29)) + len(
        rtp(10, 0, KEYFRAME_PAYLOAD, twcc=1))
    fci = receiver.counter.feedback.report()
    assert fci is not None
    feedback = parse_feedback(fci)
    assert [seq for seq, arrival in feedback.packets() if arrival is not None] == list(
        range(1, 31))


def test_tampered_and_non_rtp_datagrams() -> None:
    receiver = Receiver()
    protected = bytearray(receiver.sender.protect(rtp(1, 0, DELTA_PAYLOAD)))
    protected[20] ^= 0xFF  # the authentication tag no longer matches
    receiver.direct.datagram_received(bytes(protected), None)
    assert receiver.direct.rejected == 1 and receiver.counter.packets == 0
    unprotected_rtcp = b"\x80\xc8\x00\x06" + b"\x00" * 24  # no SRTCP trailer: rejected
    receiver.direct.datagram_received(unprotected_rtcp, None)
    assert receiver.direct.rejected == 2 and receiver.counter.sender_reports == 0
    stun = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12
    dtls = b"\x17\xfe\xfd" + b"\x00" * 20  # DTLS application data: aiortc's path
    receiver.direct.datagram_received(stun, None)
    receiver.direct.datagram_received(dtls, None)
    assert receiver.passed_on == [stun, dtls]


def test_gaps_become_nacks_until_the_packets_arrive() -> None:
    receiver = Receiver()
    for seq in (100, 101, 105, 106):  # 102, 103, 104 lost
        receiver.send(rtp(seq, seq * 3000, DELTA_PAYLOAD, marker=True))
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert receiver.counter.nack_due
    assert (stream.packets_expected, stream.packets_received, stream.lost) == (7, 4, 3)
    assert stream.fraction_lost == 3 * 256 // 7
    assert stream.fraction_lost == 0  # a new interval starts at every report
    assert stream.take_nack() == [102, 103, 104]
    assert stream.take_nack() == []  # not again before NACK_RETRY_TICKS ticks
    receiver.send(rtp(103, 103 * 3000, DELTA_PAYLOAD))  # retransmitted (late)
    assert sorted(stream.missing) == [102, 104]
    for _ in range(NACK_RETRY_TICKS - 2):
        stream.take_nack()
    assert stream.take_nack() == [102, 104]
    for _ in range(NACK_RETRIES * NACK_RETRY_TICKS):
        stream.take_nack()
    assert stream.missing == {}  # given up after NACK_RETRIES requests
    assert stream.packets_received == 5 and stream.max_seq == 106  # late packet: no reorder


def test_sequence_wrap_jitter_and_freeze() -> None:
    receiver = Receiver()
    seqs = [65533, 65534, 65535, 0, 1, 2]
    for index, seq in enumerate(seqs):
        # every other frame arrives 10 ms late: 900 ticks of jitter on a 90 kHz clock
        late = 0.01 if index % 2 else 0.0
        receiver.send(rtp(seq, index * 3000, DELTA_PAYLOAD, marker=True),
                      at=100.0 + index / 30 + late)
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert stream.cycles == 0x10000 and stream.max_seq == 2
    assert stream.packets_expected == 6 and stream.lost == 0
    assert 100 < stream.jitter < 900  # converging towards |D| = 900 ticks
    assert 1 < stream.jitter_ms < 10
    receiver.send(rtp(3, 6 * 3000, DELTA_PAYLOAD, marker=True), at=101.5)  # 1.3 s gap
    assert stream.freezes == 1 and 1.2 < stream.freeze_seconds < 1.4


def test_rtx_is_counted_but_kept_out_of_loss() -> None:
    receiver = Receiver()
    receiver.send(rtp(7, 0, b"\x00\x65" + DELTA_PAYLOAD, ssrc=0x99, payload_type=97))
    stream = receiver.counter.streams[0x99]
    assert stream.rtx and stream.packets == 1 and stream.packets_expected == 0
    assert receiver.counter.packets == 1


def test_sender_reports_come_back_in_receiver_reports() -> None:
    """SRTCP is decrypted on the direct path too; the RR aiortc would parse carries LSR/DLSR."""
    receiver = Receiver()
    for seq in (65534, 65535, 1, 2):  # 0 lost, across a wrap
        receiver.send(rtp(seq, seq * 3000, DELTA_PAYLOAD), at=100.0)
    sender_report = struct.pack("!BBHIQIII", 0x80, 200, 6, VIDEO_SSRC, 0x123456789ABCDEF0,
                                1000, 4, 400)
    receiver.direct.datagram_received(receiver.sender.protect_rtcp(sender_report), None)
    assert receiver.counter.sender_reports == 1 and receiver.passed_on == []
    receiver.clock.now = 100.5
    report = receiver.counter.receiver_report(0xCAFE)
    assert report is not None
    [packet] = RtcpPacket.parse(report)
    assert isinstance(packet, RtcpRrPacket) and packet.ssrc == 0xCAFE
    [block] = packet.reports
    assert block.ssrc == VIDEO_SSRC
    assert block.lsr == 0x56789ABC and abs(block.dlsr - 65536 // 2) <= 1
    assert block.highest_sequence == 0x10000 + 2 and block.packets_lost == 1
    assert block.fraction_lost == 256 // 5
    assert receiver.counter.receiver_report(0xCAFE) is not None  # a report every time asked
    assert Receiver().counter.receiver_report(1) is None  # nothing received: nothing to report


def test_receive_ceiling_harness_absorbs_what_it_is_offered() -> None:
    """The ceiling harness (loadtest.receive_ceiling) on real sockets, at a low rate."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the harness pins its sender and receiver to two cores")
    affinity = os.sched_getaffinity(0)
    try:
        result = uvloop.run(receive_ceiling.receive(4, 2000.0, 2.0, 1.0))
    finally:
        os.sched_setaffinity(0, affinity)
    assert result["absorbed_pps"] > 1000  # a loaded machine may slow the sender down
    assert result["loss_pct"] < 1.0
    assert 0 < result["client_cpu_us_per_received_packet"] < 1000


def test_vp8_key_frame_bit_behind_extended_descriptors() -> None:
    """The pre-check agrees with sfu.vp8 on descriptors with picture id, TL0PICIDX, TID."""
    key, delta = b"\x50\x01\x00\x9d\x01\x2a" + b"\x00" * 8, b"\x51\x01\x00" + b"\x00" * 11
    for descriptor in (b"\x10", b"\x90\x80\x80\x05", b"\x90\xe0\x05\x01\x20", b"\x90\x40\x07"):
        for payload, expected in ((key, True), (delta, False)):
            packet = descriptor + payload
            assert _vp8_key_frame_bit(packet, 0, len(packet)) is expected, (descriptor, payload)
            parsed = parse_descriptor(packet, 0, len(packet))
            assert parsed is not None and parsed.payload_offset == len(descriptor)
    assert _vp8_key_frame_bit(b"\x90\x80", 0, 2) is False  # truncated: no payload header
