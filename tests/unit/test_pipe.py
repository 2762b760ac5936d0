"""The pipe between two workers' shards of a room (sfu/pipe.py), over real UDP on 127.0.0.1:
every layer relayed with its index, PLI and NACK going back, sender reports and removal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from sfu.aiortc_bridge import Codec
from sfu.pipe import PipeTransport, RemoteMember
from sfu.producer import MediaPacket, Producer
from sfu.room import Room
from sfu.rtp import pack_header, parse_header
from sfu.stats import SfuCounters

VP8 = Codec(96, "video/vp8", 90000)
RTX = Codec(97, "video/rtx", 90000, rtx_for=96)
SSRCS = (1111, 2222, 3333)  # the publisher's SSRC of each simulcast layer


@dataclass
class Publisher:
    """What the source worker sends upstream to the real publisher."""

    plis: list[int] = field(default_factory=list)
    nacks: list[tuple[int, list[int]]] = field(default_factory=list)

    async def send_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)

    async def send_nack(self, ssrc: int, lost: list[int]) -> None:
        self.nacks.append((ssrc, lost))


class Recorder:
    """Stands where the far worker's subscribers' consumers stand in ``Producer.consumers``."""

    active, paused, closed, target_layer = True, False, False, 0

    def __init__(self) -> None:
        self.packets: list[tuple[int, int]] = []  # (layer, publisher sequence number)

    def forward(self, packet: MediaPacket) -> int:
        self.packets.append((packet.layer, packet.header.sequence_number))
        return 0

    def on_sender_report(self, ssrc: int, report: object) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class LossyPipe(PipeTransport):
    """Loses chosen RTP datagrams once, as a congested socket buffer would."""

    lose: set[int] = set()

    def send(self, datagram: bytes) -> None:
        if datagram[0] == 0 and len(datagram) > 12:
            sequence = parse_header(datagram[6:]).sequence_number
            if sequence in self.lose:
                self.lose.discard(sequence)
                return
        super().send(datagram)


def rtp(layer: int, sequence: int) -> bytes:
    return pack_header(marker=False, payload_type=96, sequence_number=sequence,
                       timestamp=sequence * 3000, ssrc=SSRCS[layer],
                       extension_block=b"") + b"\x10\x01" + bytes(100)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@dataclass
class Link:
    publisher: Publisher
    source: Producer
    near: LossyPipe
    far: PipeTransport
    far_room: Room
    member: RemoteMember


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    counters = SfuCounters()
    publisher = Publisher()
    source = Producer(source_id="s-cam", participant_id="p-alice", kind="video", mid="1",
                      codecs={96: VP8, 97: RTX}, counters=counters,
                      send_pli=publisher.send_pli, send_nack=publisher.send_nack,
                      rids=("q", "h", "f"))
    near, far_room = LossyPipe(Room("r", 10), counters), Room("r", 10)
    far = PipeTransport(far_room, SfuCounters())
    near_port, far_port = await near.open(), await far.open()
    near.connect(far_port)
    far.connect(near_port)
    member = RemoteMember("p-alice", "alice")
    far_room.add_remote(member)
    description = near.send_source(source)
    assert description is not None and near.send_source(source) is None  # once per pipe
    await far.receive_source(description)
    yield Link(publisher, source, near, far, far_room, member)
    await near.close()
    await far.close()


async def test_every_layer_arrives_with_its_index_as_a_producer_of_the_remote_member(
        link: Link) -> None:
    piped = link.member.producers["s-cam"]
    assert [p.id for p in link.far_room.producers()] == ["s-cam"]
    assert [layer.rid for layer in piped.layers] == ["q", "h", "f"]
    recorder = Recorder()
    piped.consumers.append(recorder)  # type: ignore[arg-type]
    for sequence in range(100, 105):
        for layer in (0, 2):
            link.source.on_packet(layer, rtp(layer, sequence),
                                  parse_header(rtp(layer, sequence)), time.monotonic(), None)
    await until(lambda: len(recorder.packets) == 10, "10 relayed packets")
    assert sorted(recorder.packets) == sorted((layer, s) for s in range(100, 105)
                                              for layer in (0, 2))
    now = time.monotonic()
    assert piped.layers[2].active(now) and not piped.layers[1].active(now)
    assert piped.layers[2].bitrate.bps(now) > 0


async def test_keyframe_request_and_nack_cross_back(link: Link) -> None:
    piped = link.member.producers["s-cam"]
    recorder = Recorder()
    piped.consumers.append(recorder)  # type: ignore[arg-type]
    link.near.lose = {11}
    for sequence in (10, 11, 12):
        link.source.on_packet(2, rtp(2, sequence), parse_header(rtp(2, sequence)),
                              time.monotonic(), None)
    # The far side saw 10 and 12, NACKed 11 over the pipe, and got it from the pipe's ring.
    await until(lambda: (2, 11) in recorder.packets, "sequence 11 resent across the pipe")
    assert link.publisher.nacks == []  # the publisher's own stream had no hole
    piped.request_keyframe(2)
    await until(lambda: link.publisher.plis == [SSRCS[2]], "a PLI for layer 2 upstream")


async def test_closed_source_leaves_the_far_room(link: Link) -> None:
    assert link.far_room.producers()
    link.source.close()
    await until(lambda: not link.far_room.producers(), "the piped source to go")
    assert not link.member.producers


async def test_the_far_side_says_which_layer_its_consumers_target(link: Link) -> None:
    pipe = link.source.consumers[0]
    assert (pipe.target_layer, pipe.paused) == (2, False)  # every layer until told
    every_layer = link.source.wanted_bitrate()
    piped = link.member.producers["s-cam"]
    watcher = Recorder()
    watcher.target_layer = 1
    piped.consumers.append(watcher)  # type: ignore[arg-type]
    await until(lambda: pipe.target_layer == 1, "the far side's target layer")
    assert link.source.wanted_bitrate() < every_layer  # the publisher may drop its top layer
    watcher.paused = True  # its tile is hidden: nobody there watches the source any more
    await until(lambda: pipe.paused, "the pipe consumer to pause")
