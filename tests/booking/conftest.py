"""Booking fixtures: a private PostgreSQL server, databases of both kinds, a booking server.

The PostgreSQL server is started by the tests themselves (initdb + pg_ctl in a
temporary directory, on a free loopback port, as the ``postgres`` user when
running as root) and stopped at the end of the session; nothing needs to be
running beforehand. ``scripts/test`` installs Debian's ``postgresql`` package.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import browser  # noqa: F401  (re-exported fixture)
from tests.conftest import REPO, ServerProcess, free_port, start_server, stop_server

SECRET_KEY = "test-" + "k" * 59  # the servers under test sign tokens with this


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    port: int
    directory: Path

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://visio@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = "visio_" + secrets.token_hex(6)
        # Not asyncio.run: it would leave the main thread without an event loop for later tests.
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._execute(f'CREATE DATABASE "{name}"'))
        finally:
            loop.close()
        return self.url(name)

    async def _execute(self, sql: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(host="127.0.0.1", port=self.port, user="visio",
                                           database="postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            raise RuntimeError("PostgreSQL is not installed: scripts/test installs it")
        pytest.skip("PostgreSQL server binaries not found (scripts/test installs them)")
    directory = Path(tempfile.mkdtemp(prefix="visio-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    port = free_port()
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-A", "trust", "-U", "visio",
                                      "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    options = (f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c max_connections=200")
    subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-o", options, "-l",
                                      str(directory / "server.log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield PostgresServer(port, directory)
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'visio.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def run_visio(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "signaling", *args], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=60)


@dataclass
class Organisation:
    api_key: str
    email: str
    password: str
    rooms: dict[str, int]  # name -> id


def create_org(data_dir: Path, database: str | None, *rooms: str,
               email: str = "direction@ecole-jaures.fr") -> Organisation:
    """``visio admin create-org`` as an operator would run it; rooms as 'Name:capacity'."""
    password = "mot-de-passe-" + secrets.token_hex(4)
    args = ["admin", "create-org", "--data-dir", str(data_dir), "--name", "École Jean Jaurès",
            "--admin-email", email, "--password-stdin", "--json"]
    if database:
        args += ["--database-url", database]
    for room in rooms:
        args += ["--room", room]
    result = subprocess.run([sys.executable, "-m", "signaling", *args], cwd=REPO, text=True,
                            capture_output=True, input=password + "\n", timeout=60)
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    return Organisation(created["api_key"], email, password,
                        {room["name"]: room["id"] for room in created["rooms"]})


def start_booking_server(data_dir: Path, database: str | None = None,
                         mode: str = "production") -> ServerProcess:
    """``visio serve`` on a booking database, in production mode (tokens required) by default."""
    extra = ["--mode", mode, "--data-dir", str(data_dir), "--secret-key", SECRET_KEY]
    if database:
        extra += ["--database-url", database]
    return start_server(data_dir, *extra)


@pytest.fixture
def booking_server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(database: str | None = None, mode: str = "production") -> ServerProcess:
        server = start_booking_server(tmp_path, database, mode)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_server(server)


def api(server: ServerProcess, method: str, path: str, key: str | None,
        body: Any = None) -> tuple[int, Any]:
    """One REST call; returns (status, decoded JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.base_url + path, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None
