"""The swarm's bookkeeping without a network: seats, samples, thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadtest.participant import _sdp_media
from loadtest.swarm import Scenario, Thresholds, check_thresholds, stream_samples


def test_round_robin_seats() -> None:
    scenario = Scenario("http://x", rooms=2, participants_per_room=4, publishers_per_room=2)
    seats = [scenario.assign(i) for i in range(8)]
    assert [s[0] for s in seats] == ["lt-0", "lt-1"] * 4
    assert [s[2] for s in seats] == [True] * 4 + [False] * 4
    assert scenario.expects_media(True) and scenario.expects_media(False)
    alone = Scenario("http://x", rooms=1, participants_per_room=3, publishers_per_room=1)
    assert not alone.expects_media(True)  # the only publisher receives nothing


def test_stream_samples_are_interval_rates() -> None:
    before = {"kind": "video", "octets": 1000, "expected": 100, "lost": 0, "freezes": 1,
              "freeze_seconds": 0.6, "jitter_ms": 3.0, "resolution": (320, 180)}
    after = {**before, "octets": 1000 + 50_000, "expected": 300, "lost": 4, "freezes": 3,
             "freeze_seconds": 2.6}
    samples = stream_samples(before, after, 2.0)
    values = {(kind, name): value for kind, name, value, _, _ in samples}
    assert values[("video", "bitrate_kbps")] == 200.0
    assert values[("video", "loss_pct")] == 2.0
    assert values[("video", "jitter_ms")] == 3.0
    assert [s for s in samples if s[1] == "freeze_ms"] == [("video", "freeze_ms", 1000.0, 0,
                                                            None)] * 2
    assert ("video", "layer 320x180") in values


@dataclass
class Entry:
    num_requests: int = 0
    avg_response_time: float = 0.0
    p95: float = 0.0

    def get_response_time_percentile(self, _: float) -> float:
        return self.p95


def test_thresholds() -> None:
    entries: dict[tuple[str, str], Entry] = {
        ("first_keyframe", "join"): Entry(8, 1500, 2400),
        ("loss_pct", "video"): Entry(40, 0.5),
        ("bitrate_kbps", "video"): Entry(60),  # 2 minutes of received video
        ("freeze_ms", "video"): Entry(3),
    }

    def stats(name: str, kind: str) -> Any:
        return entries.get((name, kind), Entry())

    assert check_thresholds(stats, Thresholds(), True, 0) == []
    broken = check_thresholds(stats, Thresholds(join_p95_ms=1000, loss_pct=0.1,
                                                freezes_per_minute=1, errors=0), True, 2)
    assert len(broken) == 4, broken
    assert check_thresholds(stats, Thresholds(), False, 0) == [
        "no participant reached first_rtp"]


def test_sdp_media() -> None:
    sdp = "\r\n".join([
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=rtpmap:111 opus/48000/2",
        "a=ssrc:11 cname:x",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 98", "a=mid:1",
        "a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000", "a=ssrc:22 cname:x", ""])
    codecs, ssrc_mid, mid_kind, twcc, rtx = _sdp_media(sdp)
    assert codecs[111] == ("opus", 48000) and codecs[97] == ("vp8", 90000)
    assert ssrc_mid == {11: "0", 22: "1"} and mid_kind == {"0": "audio", "1": "video"}
    assert twcc == 5 and rtx == {98}
