"""Hostile signaling frames at a live room: typed errors, no crash, forwarding continues."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from loadtest.signaling_client import SignalingClient
from tests.conftest import ServerProcess
from tests.fuzz.malformed import signaling_frames
from tests.media.peer import assert_still_forwarding, streaming_pair

pytestmark = pytest.mark.media

DOCUMENTED_CODES = {
    "bad_json", "bad_message", "unknown_type", "unsupported_version", "not_joined",
    "already_joined", "stale_revision", "invalid_sdp", "room_full",
}
FRAMES_PER_SOCKET = 40  # below the server's limit of 50 invalid frames per 10 s
SOCKETS = 26


async def errors_received(client: SignalingClient, expected: int, timeout: float) -> list[dict]:
    errors: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(errors) < expected and time.monotonic() < deadline:
        try:
            event = await asyncio.wait_for(client.events.get(), 0.5)
        except TimeoutError:
            continue
        if event["type"] == "error":
            errors.append(event)
    return errors


async def test_a_thousand_malformed_frames_get_typed_errors_and_the_room_keeps_forwarding(
        visio_server: ServerProcess) -> None:
    a, b = await streaming_pair(visio_server.base_url, "fuzzed")
    sent = 0
    codes: dict[str, int] = {}
    try:
        for batch in range(SOCKETS):
            client = SignalingClient(visio_server.base_url)
            await client.connect()
            joined = batch % 2 == 1
            if joined:
                await client.request({"type": "join", "v": 1, "room": "fuzzed", "name": "Fuzzer"})
            frames = list(signaling_frames(batch, FRAMES_PER_SOCKET, joined=joined))
            for frame in frames:
                await client.send_raw(frame)
            sent += len(frames)
            errors = await errors_received(client, len(frames), 15)
            assert len(errors) == len(frames), (
                f"batch {batch}: {len(errors)} errors for {len(frames)} malformed frames")
            for error in errors:
                assert error["code"] in DOCUMENTED_CODES, error
                assert isinstance(error["message"], str) and error["message"]
                codes[error["code"]] = codes.get(error["code"], 0) + 1
            assert not client.closed.is_set()
            await client.close()
        assert sent >= 1000
        assert {"bad_json", "bad_message", "unknown_type", "not_joined", "already_joined",
                "invalid_sdp", "unsupported_version"} <= set(codes), codes
        await assert_still_forwarding(a, b)
        stats = visio_server.stats()
        assert stats["counters"]["ingress_errors"] == 0
        assert "Traceback" not in visio_server.log()
    finally:
        await a.close()
        await b.close()


async def test_out_of_order_messages_get_typed_errors(visio_server: ServerProcess) -> None:
    client = SignalingClient(visio_server.base_url)
    await client.connect()
    try:
        with pytest.raises(Exception, match="not_joined"):
            await client.request({"type": "subscribe_answer", "revision": 1, "sdp": "v=0\r\n"})
        await client.request({"type": "join", "v": 1, "room": "order", "name": "Early"})
        with pytest.raises(Exception, match="stale_revision"):
            await client.request({"type": "subscribe_answer", "revision": 1, "sdp": "v=0\r\n"})
        with pytest.raises(Exception, match="already_joined"):
            await client.request({"type": "join", "v": 1, "room": "order", "name": "Again"})
        with pytest.raises(Exception, match="invalid_sdp"):
            await client.request({"type": "publish_offer", "sdp": "v=0\r\ns=-\r\n"})
        assert (await client.request({"type": "ping"}))["type"] == "pong"
    finally:
        await client.close()


async def test_oversized_frame_closes_the_socket_with_1009(visio_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(visio_server.base_url.replace("http", "ws") + "/ws")
        await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 70_000}))
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1009


async def test_a_flood_of_invalid_frames_is_cut_off(visio_server: ServerProcess) -> None:
    client = SignalingClient(visio_server.base_url)
    await client.connect()
    try:
        for _ in range(60):
            if client.closed.is_set():
                break
            await client.send_raw("not json")
        await asyncio.wait_for(client.closed.wait(), 5)
        codes = []
        while not client.events.empty():
            codes.append(client.events.get_nowait()["code"])
        assert codes[-1] == "rate_limited"
        assert codes.count("bad_json") == 51
    finally:
        await client.close()
