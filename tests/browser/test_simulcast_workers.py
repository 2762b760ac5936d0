"""Simulcast across two SFU workers: Chromium publishes three layers on one worker, the page
that watches it is served by the other (the source relayed through a pipe, sfu/pipe.py).
Layer switching both ways and the upstream layer choice must work as within one worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_simulcast import (
    test_small_tile_gets_the_low_layer_and_a_large_one_the_high_layer as simulcast_scenario,
)
from tests.conftest import ServerProcess, start_server, stop_server

pytestmark = pytest.mark.browser


@pytest.fixture
def spread_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """Each worker serves one participant of a room: a second participant is on the other."""
    server = start_server(tmp_path, "--workers", "2", "--room-participants-per-worker", "1")
    try:
        yield server
    finally:
        stop_server(server)


async def test_layers_switch_across_the_pipe(browser: Any, spread_server: ServerProcess,
                                             artifacts: Path) -> None:
    await simulcast_scenario(browser, spread_server, artifacts)
    workers = spread_server.stats()["workers"]
    assert [w["participants"] for w in workers] == [1, 1], workers
    assert all(w["pipes"] == 1 for w in workers), workers
