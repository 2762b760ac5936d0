"""Relay-only clients through a real coturn with time-limited credentials from visio."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from signaling.turn import rest_credential, with_turn_credentials
from tests.conftest import ServerProcess, free_port, start_server, stop_server
from tests.media import peer as peer_module
from tests.media.peer import Received, TestPeer

SECRET = "coturn-shared-" + "s" * 20
REALM = "visio.test"


@dataclass
class Coturn:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A private turnserver on a free 127.0.0.1 port, REST-API auth with SECRET."""
    executable = shutil.which("turnserver")
    if executable is None:
        pytest.skip("coturn is not installed (scripts/test installs Debian's coturn)")
    port = free_port()
    relay = 20000 + (port % 40) * 200  # a private relay range per test run
    log_path = tmp_path / "turnserver.log"
    process = subprocess.Popen(
        [executable, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
         "--relay-ip=127.0.0.1", "--allow-loopback-peers", "--use-auth-secret",
         f"--static-auth-secret={SECRET}", f"--realm={REALM}", "--no-tls", "--no-dtls",
         "--no-cli", f"--min-port={relay}", f"--max-port={relay + 199}",
         f"--pidfile={tmp_path / 'turnserver.pid'}", f"--db={tmp_path / 'turndb'}",
         "--log-file=stdout", "--simple-log", "--verbose"],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    server = Coturn(port, process, log_path)
    try:
        deadline = time.monotonic() + 15
        while "Total General servers" not in server.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def turn_visio(tmp_path: Path, coturn: Coturn) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, "--ice-server", coturn.url, "--turn-secret", SECRET,
                          "--turn-ttl", "600")
    try:
        yield server
    finally:
        stop_server(server)


def test_rest_credential_is_what_coturn_computes() -> None:
    username, credential = rest_credential("secret", "visio-ab12", 3600, now=1_700_000_000)
    assert username == "1700003600:visio-ab12"
    expected = hmac.new(b"secret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_only_turn_entries_get_credentials_and_each_socket_its_own() -> None:
    servers = [{"urls": ["stun:s.example"]}, {"urls": ["turns:t.example:443"]}]
    first, second = with_turn_credentials(servers, "k"), with_turn_credentials(servers, "k")
    assert first[0] == {"urls": ["stun:s.example"]}
    assert first[1]["username"] != second[1]["username"]
    assert with_turn_credentials(servers, None) is servers


def relay_config(ice_server: dict[str, Any]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=ice_server["urls"], username=ice_server["username"],
                                 credential=ice_server["credential"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@pytest.mark.media
async def test_relay_only_clients_exchange_media_through_coturn(
        turn_visio: ServerProcess, coturn: Coturn, monkeypatch: pytest.MonkeyPatch) -> None:
    a = TestPeer(turn_visio.base_url, "relayed", "alice")
    b = TestPeer(turn_visio.base_url, "relayed", "bob")
    try:
        joined = [await a.join(), await b.join()]
        turn = [server for message in joined for server in message["ice_servers"]]
        assert len(turn) == 2 and all(s["urls"] == [coturn.url] for s in turn)
        assert turn[0]["username"] != turn[1]["username"]  # per socket
        expiry = int(turn[0]["username"].split(":", 1)[0])
        assert 500 < expiry - time.time() <= 600
        # Every peer connection of this test may only use relay candidates.
        # (TestPeer pins a loopback host candidate; a relay-only client has none to pin.)
        monkeypatch.setattr(peer_module, "new_pc",
                            lambda: RTCPeerConnection(relay_config(turn[0])))
        monkeypatch.setattr(peer_module, "pin_ice_addresses", lambda pc, ice: None)
        for peer in (a, b):
            await peer.publish()
        for me, other in ((a, b), (b, a)):
            await me.wait_for(lambda me=me, other=other: (
                me.video_from(other.participant_id or "") or Received("")).frames > 10,
                30, f"relayed video from {other.name} at {me.name}")
        for pc in (a.publish_pc, a.subscribe_pc, b.publish_pc, b.subscribe_pc):
            assert pc is not None
            gatherer = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
            candidates = gatherer.getLocalCandidates()
            assert candidates and {c.type for c in candidates} == {"relay"}, candidates
            pairs = gatherer._connection._nominated.values()  # aioice: the pair in use
            assert pairs and all(p.local_candidate.type == "relay" for p in pairs)
    finally:
        await a.close()
        await b.close()
    log = coturn.log()
    assert "ALLOCATE processed, success" in log, log[-3000:]
    assert "CHANNEL_BIND processed, success" in log  # aioice relays through channels


async def test_an_expired_credential_is_refused_by_coturn(coturn: Coturn) -> None:
    async def relay_candidates(ttl: int) -> list[Any]:
        username, password = rest_credential(SECRET, "late", ttl)
        connection = aioice.Connection(
            ice_controlling=True, turn_server=("127.0.0.1", coturn.port),
            turn_username=username, turn_password=password,
            transport_policy=aioice.TransportPolicy.RELAY)
        try:
            await asyncio.wait_for(connection.gather_candidates(), 10)
            return list(connection.local_candidates)
        finally:
            await connection.close()

    assert [c.type for c in await relay_candidates(600)] == ["relay"]
    assert await relay_candidates(-60) == []
    assert "Cannot find credentials of user" in coturn.log()


def test_a_turn_secret_replaces_static_credentials() -> None:
    from signaling.settings import browser_ice_servers

    servers = browser_ice_servers(["stun:s.example", "turns:t.example:443"], None, None,
                                  time_limited=True)
    assert servers == [{"urls": ["stun:s.example"]}, {"urls": ["turns:t.example:443"]}]
    with pytest.raises(ValueError, match="turn-secret"):
        browser_ice_servers(["turns:t.example:443"], None, None)
