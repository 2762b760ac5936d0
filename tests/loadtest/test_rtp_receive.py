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
        tx.allow_repeat_tx = True  # a test may resend a packet it first sent corrupted
        rx = pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
                              srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        self.sender = pylibsrtp.Session(tx)
        self.clock = Clock()
        self.marks: list[str] = []
        self.counter = RtpCounter(self.new_stream, self.marks.append, self.clock)
        self.counter.twcc_id = TWCC_ID
        self.losses = 0
        self.counter.on_loss = self.lost
        self.passed_on: list[bytes] = []
        self.direct = DirectReceive(pylibsrtp.Session(rx), self.counter, self.fallback)

    def new_stream(self, ssrc: int, payload_type: int) -> ReceivedStream:
        return ReceivedStream(ssrc, "video", "0", 90000, rtx=payload_type == 97, vp8=True)

    def fallback(self, data: bytes, addr: Any) -> None:
        self.passed_on.append(data)

    def lost(self) -> None:
        self.losses += 1

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
    assert receiver.losses == 1  # the NACK timer was told once, for the one gap
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


# --- header-only counting: which packets are authenticated and decrypted

PACKETS_PER_FRAME = 5
SRTP_TAG = 10  # AES128_CM_SHA1_80, the Receiver's profile


def _frames(receiver: Receiver, first_seq: int, frames: int, *, first_frame: int = 0,
            payload_of: Any = None, twcc: bool = False) -> list[bytes]:
    """Sends ``frames`` frames of PACKETS_PER_FRAME packets; returns the plain packets."""
    sent = []
    for frame in range(first_frame, first_frame + frames):
        for index in range(PACKETS_PER_FRAME):
            seq = first_seq + (frame - first_frame) * PACKETS_PER_FRAME + index
            payload = (payload_of(frame, index) if payload_of is not None
                       else DELTA_PAYLOAD if index == 0 else b"\x00" + bytes(range(80)))
            packet = rtp(seq & 0xFFFF, frame * 3000, payload,
                         marker=index == PACKETS_PER_FRAME - 1,
                         twcc=seq & 0xFFFF if twcc else None)
            receiver.send(packet, at=100.0 + frame / 30)
            sent.append(packet)
    return sent


@pytest.mark.parametrize("twcc", [True, False], ids=["transport-cc", "no-feedback"])
def test_later_packets_of_a_frame_are_counted_from_the_header(twcc: bool) -> None:
    receiver = Receiver()
    if not twcc:  # no arrival times to report: the counter's shortest path
        receiver.counter.twcc_id = 0
    sent = _frames(receiver, 1000, 32, twcc=twcc)  # 160 packets
    stream = receiver.counter.streams[VIDEO_SSRC]
    demux = receiver.direct
    # every frame's first packet, and every 16th packet of the stream
    first_of_frame = {i for i in range(160) if i % PACKETS_PER_FRAME == 0}
    sampled = {i for i in range(160) if i % 16 == 0}
    assert demux.verified == len(first_of_frame | sampled) < 160 // 3
    assert demux.rejected == 0
    # what the header gives is counted for every packet, decrypted or not
    assert receiver.counter.packets == receiver.counter.direct == stream.packets == 160
    assert (stream.packets_expected, stream.lost, stream.frames, stream.freezes) == (160, 0, 32, 0)
    assert receiver.counter.octets == sum(len(packet) for packet in sent)  # tag not counted
    fci = receiver.counter.feedback.report()
    if not twcc:
        assert fci is None
        return
    assert fci is not None
    assert [seq for seq, arrival in parse_feedback(fci).packets()
            if arrival is not None] == list(range(1000, 1160))


def test_a_gap_is_loss_and_the_packet_after_it_is_decrypted() -> None:
    receiver = Receiver()
    for seq in (10, 11, 13, 14):  # one frame, 12 lost
        receiver.send(rtp(seq, 3000, DELTA_PAYLOAD, marker=seq == 14))
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert (stream.packets_expected, stream.lost, stream.frames) == (5, 1, 1)
    assert stream.take_nack() == [12]
    assert receiver.direct.verified == 2  # the frame's first, and 13 after the gap


def test_key_frames_spanning_packets_and_reordered_first_packets() -> None:
    receiver = Receiver()
    keyframe_later = b"\x00" + b"\x5a" * 80  # continuation of a key frame's partition
    _frames(receiver, 500, 2)
    # a key frame of 3 packets, in order: its first packet is decrypted and parsed
    for index, payload in enumerate((KEYFRAME_PAYLOAD, keyframe_later, keyframe_later)):
        receiver.send(rtp(510 + index, 2 * 3000, payload, marker=index == 2))
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert (stream.resolution, stream.keyframes) == ((640, 360), 1)
    # the next key frame's first packet arrives after the second one (reordered, or
    # retransmitted on the same SSRC): it is still decrypted, so the key frame is seen
    bigger = KEYFRAME_PAYLOAD.replace((640).to_bytes(2, "little") + (360).to_bytes(2, "little"),
                                      (1280).to_bytes(2, "little") + (720).to_bytes(2, "little"))
    receiver.send(rtp(514, 3 * 3000, keyframe_later))
    receiver.send(rtp(513, 3 * 3000, bigger))
    receiver.send(rtp(515, 3 * 3000, keyframe_later, marker=True))
    assert (stream.resolution, stream.keyframes) == ((1280, 720), 2)
    assert stream.lost == 0 and stream.frames == 4


def test_header_only_packets_never_look_like_key_frames() -> None:
    """A later packet's payload stays encrypted: bytes that would read as a VP8 key frame
    header once decrypted are not looked at."""
    receiver = Receiver()
    receiver.send(rtp(1, 0, DELTA_PAYLOAD))  # the frame's first packet: decrypted
    receiver.send(rtp(2, 0, KEYFRAME_PAYLOAD, marker=True))  # same frame: header only
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert receiver.direct.verified == 1 and stream.keyframes == 0 and stream.frames == 1


def test_corrupted_packets_are_rejected_when_decrypted() -> None:
    receiver = Receiver()
    demux = receiver.direct

    def send_tampered(packet: bytes) -> None:
        protected = bytearray(receiver.sender.protect(packet))
        protected[-1] ^= 0xFF  # the authentication tag
        demux.datagram_received(bytes(protected), None)

    send_tampered(rtp(100, 0, DELTA_PAYLOAD))  # a new stream's first packet
    assert demux.rejected == 1 and receiver.counter.packets == 0
    receiver.send(rtp(100, 0, DELTA_PAYLOAD))
    for seq in range(101, 116):  # one frame: packets 1 to 15 of the stream
        receiver.send(rtp(seq, 0, DELTA_PAYLOAD))
    send_tampered(rtp(116, 0, DELTA_PAYLOAD))  # the stream's 17th packet: sampled
    assert demux.rejected == 2
    send_tampered(rtp(116, 3000, DELTA_PAYLOAD))  # a frame's first packet
    assert demux.rejected == 3
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert stream.packets == 16 and stream.max_seq == 115 and stream.last_timestamp == 0
    # the trade-off: a corrupted later packet of a frame outside the sample is counted
    receiver.send(rtp(116, 3000, DELTA_PAYLOAD))
    send_tampered(rtp(117, 3000, DELTA_PAYLOAD))
    assert demux.rejected == 3 and stream.packets == 18


def test_a_wrong_key_rejects_every_packet() -> None:
    receiver = Receiver()
    other = pylibsrtp.Session(pylibsrtp.Policy(
        key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
    for seq in range(20):
        receiver.direct.datagram_received(other.protect(rtp(seq, seq // 5 * 3000,
                                                             DELTA_PAYLOAD)), None)
    assert receiver.direct.rejected == 20 and receiver.counter.packets == 0


def test_padding_is_read_from_decrypted_packets_only() -> None:
    receiver = Receiver()
    receiver.send(rtp(1, 0, DELTA_PAYLOAD))
    padded = bytearray(rtp(2, 0, b"\x00" * 40 + b"\x00\x00\x00\x04"))
    padded[0] |= 0x20  # P: the last byte (4) says how many are padding; it is encrypted
    receiver.send(bytes(padded))
    receiver.send(rtp(3, 0, DELTA_PAYLOAD, marker=True))
    stream = receiver.counter.streams[VIDEO_SSRC]
    assert receiver.direct.verified == 2  # the first packet and the padded one
    assert stream.packets == 3 and stream.frames == 1 and stream.lost == 0


def test_srtp_index_stays_right_across_wraps_with_skipped_packets() -> None:
    """libsrtp guesses each packet's rollover counter from the last one it decrypted;
    with most packets skipped, > 70,000 packets and a wrap of the sequence number must
    still authenticate, and a key frame after the wrap must still decrypt."""
    receiver = Receiver()
    start = 65536 - 30_000
    frames = 72_000 // PACKETS_PER_FRAME

    def payload_of(frame: int, index: int) -> bytes:
        if index == 0:
            return KEYFRAME_PAYLOAD if frame == frames - 1 else DELTA_PAYLOAD
        return b"\x00" + bytes(range(80))

    _frames(receiver, start, frames, payload_of=payload_of)
    stream = receiver.counter.streams[VIDEO_SSRC]
    demux = receiver.direct
    assert demux.rejected == 0
    assert stream.cycles == 0x10000 and stream.packets == stream.packets_expected == 72_000
    assert stream.lost == 0 and stream.frames == frames
    assert demux.verified < 72_000 // 3
    assert (stream.resolution, stream.keyframes) == ((640, 360), 1)  # decrypted after the wrap
