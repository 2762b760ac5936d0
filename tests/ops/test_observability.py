"""/metrics during a real call, /readyz, and logs that never show a token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from signaling.logs import REDACTED, RedactTokens, configure_logging, redact
from signaling.observability import Histogram
from tests.conftest import ServerProcess, start_server, stop_server
from tests.media.peer import Received, TestPeer

# A well-formed JWT signed with some other key: the server refuses it, and must not log it.
FORGED = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb29tIjoic2FsbGUtYiIsInJvbGUiOiJob3N0In0."
          "c2lnbmF0dXJlLW9mLWFub3RoZXIta2V5LXJlYWxseQ")


def scrape(server: ServerProcess) -> dict[str, float]:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_redact_hides_jwts_and_token_parameters() -> None:
    line = f"GET /?room=salle&token={FORGED[:40]}x&lang=fr join {FORGED} " \
           '{"token": "abc123", "name": "Léa"}'
    cleaned = redact(line)
    assert "eyJ" not in cleaned and "abc123" not in cleaned
    assert "room=salle" in cleaned and "lang=fr" in cleaned and "Léa" in cleaned
    assert cleaned.count(REDACTED) == 3


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactTokens())
    logger = logging.getLogger("tests.ops.redact")
    logger.addHandler(handler)
    try:
        logger.warning("join with %s", FORGED)
        try:
            raise ValueError(f"bad token {FORGED}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert FORGED not in stream.getvalue()
    assert stream.getvalue().count(REDACTED) == 2


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("visio.test").info("meeting link /?room=a&token=%s", FORGED)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["level"] == "INFO" and line["logger"] == "visio.test"
    assert line["message"] == f"meeting link /?room=a&token={REDACTED}"


def test_histogram_is_cumulative() -> None:
    histogram = Histogram((1.0, 2.0))
    for value in (0.5, 1.5, 1.7, 9.0):
        histogram.observe(value)
    assert list(histogram.lines("x")) == [
        'x_bucket{le="1.0"} 1', 'x_bucket{le="2.0"} 3', 'x_bucket{le="+Inf"} 4',
        "x_sum 12.7", "x_count 4"]


def test_readyz_once_started(visio_server: ServerProcess) -> None:
    with urllib.request.urlopen(visio_server.base_url + "/readyz", timeout=5) as response:
        assert json.load(response) == {"status": "ready"}


@pytest.mark.media
async def test_metrics_during_a_three_participant_call(visio_server: ServerProcess) -> None:
    peers = [TestPeer(visio_server.base_url, "metered", name) for name in ("ana", "ben", "chloé")]
    try:
        for peer in peers:
            await peer.join()
        for peer in peers:
            await peer.publish()
        for peer in peers:
            for other in peers:
                if other is not peer:
                    await peer.wait_for(
                        lambda p=peer, o=other: (p.video_from(o.participant_id or "")
                                                 or Received("")).frames > 5,
                        20, f"video from {other.name} at {peer.name}")
        for _ in range(40):  # bandwidth is sampled every 2 s once estimates (REMB) arrive
            samples = scrape(visio_server)
            if samples["visio_subscriber_estimated_bandwidth_bps_count"] > 0:
                break
            await asyncio.sleep(0.5)
    finally:
        for peer in peers:
            await peer.leave()
    assert samples["visio_rooms"] == 1
    assert samples["visio_participants"] == 3
    assert samples["visio_producers"] == 6  # audio + video each
    assert samples["visio_consumers"] == 12  # 3 subscribers x 4 tracks of the others
    assert samples["visio_rtp_packets_forwarded_total"] > 0
    assert samples["visio_rtp_bytes_forwarded_total"] > samples["visio_rtp_packets_forwarded_total"]
    for name in ("visio_nacks_received_total", "visio_plis_received_total",
                 "visio_retransmissions_total", "process_cpu_seconds_total"):
        assert name in samples
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["visio_event_loop_lag_seconds_count"] > 0
    assert samples["visio_subscriber_estimated_bandwidth_bps_count"] > 0
    assert samples['visio_subscriber_estimated_bandwidth_bps_bucket{le="+Inf"}'] > 0


@pytest.mark.media
async def test_a_join_with_a_token_never_reaches_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_LOG_FORMAT", "json")
    monkeypatch.setenv("VISIO_LOG_LEVEL", "DEBUG")  # everything that is ever logged
    server = start_server(tmp_path)
    try:
        with urllib.request.urlopen(f"{server.base_url}/?room=salle-b&token={FORGED}",
                                    timeout=5) as response:
            assert response.status == 200
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(server.base_url.replace("http", "ws") + "/ws") as ws:
            await ws.send_json({"type": "join", "v": 1, "id": 1, "room": "salle-b",
                                "name": "Léa", "token": FORGED})
            reply = await ws.receive_json(timeout=5)
            assert reply["type"] == "error" and reply["code"] == "token_invalid", reply
            peer = TestPeer(server.base_url, "salle-b", "Léa")
            await peer.join()
            await peer.publish()
            await asyncio.sleep(1)
            await peer.leave()
    finally:
        stop_server(server)
    log = server.log()
    assert log.strip(), "the server logged nothing at DEBUG"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    ids = [(line["room"], line["participant"]) for line in lines
           if line["message"].startswith("participant ")]
    assert ids == [("salle-b", peer.participant_id)] * 2, "join and leave, with their ids"
    signature = FORGED.rsplit(".", 1)[1]
    assert not re.search(re.escape(signature) + "|" + re.escape(FORGED[:60]), log)
