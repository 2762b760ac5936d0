"""Shared fixtures: a real ``visio serve`` process on a free loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/api/stats", timeout=5) as response:
            data: dict[str, Any] = json.load(response)
        return data

    def os_thread_count(self) -> int:
        """Threads of the server process as the kernel sees them (not as it reports itself)."""
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp_path: Path, *extra: str) -> ServerProcess:
    """``visio serve`` in development mode (joins by room name, no booking token needed),
    its data directory in tmp_path; ``extra`` flags come last and so win. Returns once
    ``/readyz`` says ready (its SFU workers serve)."""
    port = free_port()
    log_path = tmp_path / f"visio-{port}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "signaling", "serve", "--port", str(port),
         "--ice-announce", "127.0.0.1", "--mode", "development", "--data-dir", str(tmp_path),
         *extra],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"visio serve exited: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1):
                return ServerProcess(base_url, process, log_path)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("visio serve did not become healthy within 20 s")


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def visio_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh ``visio serve`` subprocess for one test."""
    server = start_server(tmp_path)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ServerProcess]:
    """``visio serve --workers 2`` where a room spans the second worker as soon as the first
    serves one of its participants: every pair of participants is split across the two."""
    server = start_server(tmp_path, "--workers", "2", "--room-participants-per-worker", "1")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
