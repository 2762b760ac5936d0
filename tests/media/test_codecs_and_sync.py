"""H.264 forwarding, and what browsers need for lip sync: one stream per publisher and SRs."""

from __future__ import annotations

import asyncio
import re
import struct

import pytest

from tests.conftest import ServerProcess
from tests.media.peer import TestPeer

pytestmark = pytest.mark.media


async def test_h264_is_forwarded_and_decoded(visio_server: ServerProcess) -> None:
    publisher = TestPeer(visio_server.base_url, "h264", "publisher", size=(320, 240))
    subscriber = TestPeer(visio_server.base_url, "h264", "subscriber")
    try:
        await publisher.join()
        await subscriber.join()
        await publisher.publish(video_codec="video/H264")
        assert publisher.publish_pc is not None
        sdp = publisher.publish_pc.remoteDescription.sdp
        assert "H264" in sdp and "VP8" not in sdp  # the SFU answered with H.264 only
        await subscriber.wait_for(
            lambda: (subscriber.video_from(publisher.participant_id or "") or _none()).frames
            >= 10, 20, "10 decoded H.264 frames")
        record = subscriber.video_from(publisher.participant_id or "")
        assert record is not None and record.sizes == {(320, 240)}
        assert subscriber.subscribe_pc is not None
        assert "H264" in subscriber.subscribe_pc.localDescription.sdp
    finally:
        await publisher.close()
        await subscriber.close()


def _none():  # type: ignore[no-untyped-def]
    from tests.media.peer import Received
    return Received("")


def _capture_sender_reports(peer: TestPeer) -> list[tuple[int, int, int]]:
    """(ssrc, ntp, rtp) of every SR arriving on ``peer``'s subscribe transport."""
    assert peer.subscribe_pc is not None
    dtls = peer.subscribe_pc.getTransceivers()[0].receiver.transport
    reports: list[tuple[int, int, int]] = []
    original = dtls._handle_rtcp_data

    async def capture(data: bytes) -> None:
        pos = 0
        while pos + 4 <= len(data):
            packet_type = data[pos + 1]
            length = (struct.unpack_from("!H", data, pos + 2)[0] + 1) * 4
            if packet_type == 200 and pos + 20 <= len(data):
                ssrc, ntp, rtp = struct.unpack_from("!IQI", data, pos + 4)
                reports.append((ssrc, ntp, rtp))
            pos += length
        await original(data)

    dtls._handle_rtcp_data = capture
    return reports


async def test_subscribers_get_one_stream_per_publisher_and_translated_sender_reports(
        visio_server: ServerProcess) -> None:
    publisher = TestPeer(visio_server.base_url, "sync", "publisher")
    subscriber = TestPeer(visio_server.base_url, "sync", "subscriber")
    try:
        await publisher.join()
        await subscriber.join()
        await publisher.publish()
        await subscriber.wait_for(lambda: subscriber.subscribe_pc is not None, 10, "an offer")
        reports = _capture_sender_reports(subscriber)
        await subscriber.wait_for(
            lambda: (subscriber.video_from(publisher.participant_id or "") or _none()).frames
            >= 5, 20, "video")
        assert subscriber.subscribe_pc is not None
        offer = subscriber.subscribe_pc.remoteDescription.sdp
        msids = re.findall(r"^a=msid:(\S+) (\S+)", offer, re.MULTILINE)
        assert len(msids) == 2
        assert {stream for stream, _ in msids} == {publisher.participant_id}
        ssrcs = {int(s) for s in re.findall(r"^a=ssrc:(\d+) cname", offer, re.MULTILINE)}

        # aiortc publishers send an SR every 0.5-1.5 s; the SFU translates them per m-line.
        await subscriber.wait_for(
            lambda: len({s for s, ntp, _ in reports if ntp and s in ssrcs}) >= 2, 10,
            "sender reports with an NTP time for audio and video")
        assert all(rtp != 0 for _, ntp, rtp in reports if ntp)
        # The NTP times are the publisher's own (not the SFU's clock), so audio and video
        # of one publisher line up in the browser.
        await asyncio.sleep(0)
        publisher_ntp = {int(ntp) for ntp in publisher.sent_sender_report_ntp()}
        forwarded_ntp = {ntp for _, ntp, _ in reports if ntp}
        assert forwarded_ntp <= publisher_ntp, (forwarded_ntp - publisher_ntp)
    finally:
        await publisher.close()
        await subscriber.close()
