"""A simulcast camera turned off and on again comes back on its old SSRCs without RIDs:
the ingress must still know which layer each one is."""

from __future__ import annotations

from sfu.aiortc_bridge import MID_URI, RID_URI, Codec, IncomingTrack
from sfu.ingress import PublisherIngress
from sfu.producer import Producer
from sfu.rtp import pack_extensions, pack_header, parse_header
from sfu.stats import SfuCounters

SSRCS = {"q": 111, "h": 222, "f": 333}
CODECS = {96: Codec(96, "video/vp8", 90000)}


class QuietConnection:
    extension_ids = {MID_URI: 1, RID_URI: 10}

    async def send_remb(self, *_: object) -> None:
        return None

    async def send_receiver_report(self, *_: object) -> None:
        return None


async def _nothing(*_: object) -> None:
    return None


def _camera() -> Producer:
    return Producer(source_id="s", participant_id="p", kind="video", mid="1", codecs=CODECS,
                    counters=SfuCounters(), send_pli=_nothing, send_nack=_nothing,
                    rids=("q", "h", "f"))


def _packet(ssrc: int, sequence: int, rid: str | None) -> bytes:
    extensions = [(1, b"1")] + ([(10, rid.encode())] if rid else [])
    header = pack_header(marker=True, payload_type=96, sequence_number=sequence,
                         timestamp=sequence * 3000, ssrc=ssrc,
                         extension_block=pack_extensions(extensions))
    return header + b"\x10\x11\x00\x00" + bytes(300)


def _received(producer: Producer) -> dict[str, int]:
    return {layer.rid or "": sum(s.packets_received for s in layer.reception.values())
            for layer in producer.layers}


async def test_layers_learned_before_the_camera_went_off_are_known_when_it_comes_back() -> None:
    ingress = PublisherIngress(SfuCounters())
    track = IncomingTrack("1", "video", CODECS, rids=("q", "h", "f"))
    first = _camera()
    ingress.configure(QuietConnection(), [track], {"1": first})  # type: ignore[arg-type]
    for rid, ssrc in SSRCS.items():
        data = _packet(ssrc, 1, rid)
        ingress.on_rtp(data, 1000)
    assert _received(first) == {"q": 1, "h": 1, "f": 1}

    ingress.configure(QuietConnection(), [], {})  # type: ignore[arg-type]  # camera off
    again = _camera()
    ingress.configure(QuietConnection(), [track], {"1": again})  # type: ignore[arg-type]
    for ssrc in SSRCS.values():
        ingress.on_rtp(_packet(ssrc, 2, None), 2000)  # no RID any more
        ingress.on_rtp(_packet(ssrc, 3, None), 2001)
    assert _received(again) == {"q": 2, "h": 2, "f": 2}
    assert parse_header(_packet(111, 2, None)).extensions == {1: b"1"}
