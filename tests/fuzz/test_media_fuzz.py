"""Hostile RTP and RTCP from a participant's own DTLS/SRTP session, at a live room."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.conftest import ServerProcess
from tests.fuzz.malformed import malformed_rtcp, malformed_rtp
from tests.media.peer import TestPeer, assert_still_forwarding, streaming_pair

pytestmark = pytest.mark.media

PACKETS = 1500  # of each kind; some are refused by the attacker's own SRTP replay window


def _ssrcs(sdp: str) -> list[int]:
    return sorted({int(s) for s in re.findall(r"^a=ssrc:(\d+) ", sdp, re.MULTILINE)})


async def _send_all(dtls: object, packets: list[bytes]) -> int:
    sent = 0
    for index, packet in enumerate(packets):
        try:
            await dtls._send_rtp(packet)  # type: ignore[attr-defined]
            sent += 1
        except Exception:
            pass  # the attacker's own SRTP refused to protect it: not a packet the SFU sees
        if index % 50 == 49:
            await asyncio.sleep(0.02)  # let the room breathe: this is fuzzing, not a flood
    return sent


async def test_malformed_rtp_and_rtcp_are_dropped_and_forwarding_continues(
        visio_server: ServerProcess) -> None:
    a, b = await streaming_pair(visio_server.base_url, "hostile")
    attacker = TestPeer(visio_server.base_url, "hostile", "attacker", size=(160, 120))
    try:
        await attacker.join()
        await attacker.publish()
        await attacker.wait_for(
            lambda: attacker.publish_pc is not None
            and attacker.publish_pc.connectionState == "connected"
            and attacker.subscribe_pc is not None
            and attacker.subscribe_pc.connectionState == "connected", 20, "both connections")
        assert attacker.publish_pc is not None and attacker.subscribe_pc is not None
        video = next(t for t in attacker.publish_pc.getTransceivers() if t.kind == "video")
        publish_dtls = video.sender.transport
        subscribe_dtls = attacker.subscribe_pc.getTransceivers()[0].receiver.transport
        vp8_pt = video._codecs[0].payloadType
        before = visio_server.stats()["counters"]
        started = time.monotonic()

        rtp = list(malformed_rtp(11, PACKETS, video.sender._ssrc, vp8_pt))
        rtp_sent = await _send_all(publish_dtls, rtp)
        slot_ssrcs = _ssrcs(attacker.subscribe_pc.remoteDescription.sdp)
        rtcp = list(malformed_rtcp(12, PACKETS, [*slot_ssrcs, video.sender._ssrc]))
        rtcp_sent = await _send_all(publish_dtls, rtcp[: PACKETS // 2])
        rtcp_sent += await _send_all(subscribe_dtls, rtcp[PACKETS // 2:])
        fuzz_seconds = time.monotonic() - started

        assert rtp_sent >= 1000 and rtcp_sent >= 1000, (rtp_sent, rtcp_sent)
        await asyncio.sleep(0.5)
        after = visio_server.stats()["counters"]
        assert after["rtp_malformed"] - before["rtp_malformed"] > 100
        assert after["rtcp_malformed"] > before["rtcp_malformed"]
        assert after["ingress_errors"] == 0 and after["consumer_errors"] == 0
        # Hundreds of forged PLIs from one subscriber still reach each publisher throttled.
        plis = after["plis_sent_upstream"] - before["plis_sent_upstream"]
        assert plis <= 3 * (fuzz_seconds / 0.3 + 2), f"{plis} PLIs in {fuzz_seconds:.1f} s"
        await assert_still_forwarding(a, b)
        assert "Traceback" not in visio_server.log()
    finally:
        for peer in (a, b, attacker):
            await peer.close()
