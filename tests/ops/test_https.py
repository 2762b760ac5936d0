"""HTTPS and WSS with a self-signed certificate, its reload on SIGHUP, and reverse-proxy mode."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.proxies import client_address, forwarded_scheme
from signaling.tls import write_dev_certificate
from tests.conftest import REPO, ServerProcess, free_port, start_server, stop_server
from tests.ops.browser_checks import WatchedPage


def start_https_server(tmp_path: Path, cert: Path, key: Path) -> ServerProcess:
    """``visio serve --tls-cert --tls-key`` in development mode, healthy over HTTPS."""
    port = free_port()
    log_path = tmp_path / f"visio-https-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve", "--port", str(port), "--ice-announce",
         "127.0.0.1", "--mode", "development", "--data-dir", str(tmp_path),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
    server = ServerProcess(f"https://127.0.0.1:{port}", process, log_path)
    context = ssl.create_default_context(cafile=cert)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"visio serve exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(server.base_url + "/readyz", timeout=1, context=context):
                return server
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError("visio serve did not become healthy over HTTPS within 20 s")


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    result = subprocess.run([sys.executable, "-m", "signaling", "dev-cert", "--cert", str(cert),
                             "--key", str(key)], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert key.stat().st_mode & 0o077 == 0, "the private key is readable by others"
    server = start_https_server(tmp_path, cert, key)
    try:
        yield server, cert, key
    finally:
        stop_server(server)


def test_https_sends_hsts_and_reloads_the_certificate_on_sighup(
        https_server: tuple[ServerProcess, Path, Path], tmp_path: Path) -> None:
    server, cert, key = https_server
    context = ssl.create_default_context(cafile=cert)  # the dev certificate names 127.0.0.1
    with urllib.request.urlopen(server.base_url + "/readyz", timeout=5, context=context) as r:
        assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert json.load(r) == {"status": "ready"}
    port = int(server.base_url.rsplit(":", 1)[1])
    before = served_certificate(port)
    write_dev_certificate(cert, key)  # a renewal: new key, new certificate
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_certificate(port) == before:
        assert time.monotonic() < deadline, "the new certificate was not served after SIGHUP"
        time.sleep(0.1)
    # A broken renewal is refused and the running certificate kept.
    current = served_certificate(port)
    key.write_text("not a key")
    server.process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert served_certificate(port) == current
    assert "not reloaded, keeping the current one" in server.log()


def test_a_bad_certificate_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("nonsense")
    result = subprocess.run(
        [sys.executable, "-m", "signaling", "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem"),
         "--tls-key", str(tmp_path / "cert.pem")],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "error:" in result.stderr


@pytest.mark.browser
async def test_web_client_over_https_joins_without_csp_violation(
        browser: Any, https_server: tuple[ServerProcess, Path, Path]) -> None:
    server, _, _ = https_server
    room = f"tls-{secrets.token_hex(3)}"
    pages = [await WatchedPage.open(browser, ignore_https_errors=True) for _ in range(2)]
    try:
        for page, name in zip(pages, ("Mme Martin", "Léo"), strict=True):
            await page.join(server.base_url, room, name)
            assert await page.page.evaluate("window.isSecureContext")
        for page in pages:
            await page.wait_for_remote_video()
        for page in pages:
            assert await page.violations() == [], "\n".join(page.console)
    finally:
        for page in pages:
            await page.close()


def test_forwarded_headers_are_parsed_from_the_right() -> None:
    from ipaddress import ip_network

    proxies = [ip_network("10.0.0.0/8")]
    assert client_address(["198.51.100.7"], proxies) == "198.51.100.7"
    assert client_address(["6.6.6.6, 198.51.100.7, 10.0.0.2"], proxies) == "198.51.100.7"
    assert client_address(["6.6.6.6", "198.51.100.7"], proxies) == "198.51.100.7"
    assert client_address(["10.0.0.3, 10.0.0.2"], proxies) == "10.0.0.3"
    assert client_address(["not-an-address"], proxies) is None
    assert client_address([], proxies) is None
    assert forwarded_scheme(["https"]) == "https"
    assert forwarded_scheme(["http, HTTPS"]) == "https"
    assert forwarded_scheme(["gopher"]) is None


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


@pytest.mark.parametrize("trusted", [True, False])
def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path: Path, trusted: bool) -> None:
    extra = ["--rate-limit-api", "2/min"]
    if trusted:
        extra += ["--trusted-proxy", "127.0.0.0/8"]
    server = start_server(tmp_path, *extra)
    try:
        https = {"X-Forwarded-Proto": "https"}
        _, headers = _get(server.base_url + "/healthz", https)
        assert ("Strict-Transport-Security" in headers) is trusted
        statuses = [_get(server.base_url + "/api/v1/rooms",
                         {"X-Forwarded-For": f"198.51.100.{i}"})[0] for i in range(4)]
        # Behind a trusted proxy, four clients; otherwise one address (spoofing ignored).
        assert statuses == ([401] * 4 if trusted else [401, 401, 429, 429])
    finally:
        stop_server(server)
