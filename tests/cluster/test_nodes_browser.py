"""The web client, unchanged, in a room hosted by another node than the one it loaded from."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import browser  # noqa: F401  (the Chromium fixture)
from tests.browser.test_web_client import LANDSCAPE_TABLET, PORTRAIT_TABLET, Room
from tests.cluster.conftest import RedisServer
from tests.cluster.test_nodes import metric_shows, start_node
from tests.conftest import stop_server

pytestmark = pytest.mark.browser


async def test_a_page_on_node_2_meets_a_page_on_node_1_and_survives_its_death(
        browser: Any, tmp_path: Path, redis_server: RedisServer,  # noqa: F811
        artifacts: Path) -> None:
    node1 = start_node(tmp_path, redis_server, "node1")
    node2 = start_node(tmp_path, redis_server, "node2")
    on_node1 = Room(browser, node1.base_url, artifacts)
    on_node2 = Room(browser, node2.base_url, artifacts)
    on_node2.name = on_node1.name  # the same meeting, reached through two nodes
    try:
        teacher = await on_node1.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await on_node2.join("Léo", PORTRAIT_TABLET)
        try:
            await teacher.wait_for_video_of(pupil)
            await pupil.wait_for_video_of(teacher)
            assert node1.stats()["participants"] == 2 and node2.stats()["rooms"] == 0
            await metric_shows(node2, 'visio_cluster_relays_open{node="node2"} 1')

            node1.process.kill()  # the pupil's relay breaks; the page rejoins via its origin
            killed = time.monotonic()
            while node2.stats()["participants"] != 1:
                assert time.monotonic() - killed < 10, "the pupil did not rejoin on node 2"
                await asyncio.sleep(0.2)
            print(f"\npage rejoined on node 2 {time.monotonic() - killed:.1f} s after kill -9")
            await pupil.page.wait_for_function(  # the web client's own "reconnected" state
                "() => !document.body.classList.contains('reconnecting')", timeout=10_000)
            await pupil.assert_no_error_status()
        except Exception as exc:
            raise await on_node2.report_failure(exc, "cluster-pages") from exc
    finally:
        if node1.process.poll() is None:
            stop_server(node1)
        stop_server(node2)
