"""Simulcast across two SFU workers: Chromium publishes three layers on one worker, the page
that watches it is served by the other (the source relayed through a pipe, sfu/pipe.py).
Layer switching both ways and the upstream layer choice must work as within one worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_simulcast import (
    test_small_tile_gets_the_low_layer_and_a_large_one_the_high_layer as simulcast_scenario,
)
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser


async def test_layers_switch_across_the_pipe(browser: Any, two_workers: ServerProcess,
                                             artifacts: Path) -> None:
    await simulcast_scenario(browser, two_workers, artifacts)
    workers = two_workers.stats()["workers"]
    assert [w["participants"] for w in workers] == [1, 1], workers
    assert all(w["pipes"] == 1 for w in workers), workers
