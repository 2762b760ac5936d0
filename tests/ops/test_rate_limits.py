"""One address floods joins and API calls: it gets 429s, the room keeps its media."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from loadtest.signaling_client import SignalingClient
from tests.conftest import start_server, stop_server
from tests.media.peer import assert_still_forwarding, streaming_pair

pytestmark = pytest.mark.media

FLOOD = 30


async def test_a_join_flood_gets_429s_while_the_room_keeps_forwarding(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--rate-limit-connects", "10/min")
    flood: list[SignalingClient] = []
    try:
        a, b = await streaming_pair(server.base_url, "classe")  # 2 of the 10 connections
        refused: list[aiohttp.WSServerHandshakeError] = []
        for i in range(FLOOD):
            client = SignalingClient(server.base_url)
            try:
                await client.connect()
            except aiohttp.WSServerHandshakeError as exc:
                refused.append(exc)
                await client.close()
                continue
            flood.append(client)
            await client.request({"type": "join", "v": 1, "room": "classe", "name": f"bot{i}"})
        assert len(flood) == 8, "the bucket holds 10 connections and the pair took 2"
        assert len(refused) == FLOOD - 8
        assert {exc.status for exc in refused} == {429}
        assert all(int(exc.headers["Retry-After"]) >= 1 for exc in refused if exc.headers)
        await assert_still_forwarding(a, b)
        with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as response:
            assert f'visio_rate_limited_total{{scope="connect"}} {FLOOD - 8}' in \
                response.read().decode()
        await a.close()
        await b.close()
    finally:
        for client in flood:
            with contextlib.suppress(Exception):
                await client.close()
        stop_server(server)


def test_api_and_login_floods_get_json_429s(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--rate-limit-api", "5/min", "--rate-limit-logins", "3/min")
    try:
        statuses = []
        for _ in range(8):
            try:
                with urllib.request.urlopen(server.base_url + "/api/v1/rooms", timeout=5) as r:
                    statuses.append(r.status)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                last = error
        assert statuses == [401] * 5 + [429] * 3  # no API key: refused, but counted
        assert int(last.headers["Retry-After"]) >= 1
        body = json.loads(last.read())
        assert body["error"]["code"] == "rate_limited"
        assert body["error"]["retry_after"] == int(last.headers["Retry-After"])
        login = [_post(server.base_url + "/booking/login") for _ in range(5)]
        assert login[:3] != [429] * 3 and login[3:] == [429, 429]
        # Other pages are not limited, and the health checks never are.
        for path in ("/", "/healthz", "/readyz", "/booking/login"):
            with urllib.request.urlopen(server.base_url + path, timeout=5) as r:
                assert r.status == 200, path
    finally:
        stop_server(server)


def _post(url: str) -> int:
    request = urllib.request.Request(url, data=b"email=x&password=y", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
