"""Chromium publishes three simulcast layers; another page gets the layer that fits its tile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_web_client import LANDSCAPE_TABLET, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

INBOUND_VIDEO_HEIGHT_JS = """
async () => {
  const pc = window.visio && window.visio.pcs && window.visio.pcs.subscribe;
  if (!pc) return 0;
  let height = 0;
  (await pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      height = Math.max(height, report.frameHeight || 0);
    }
  });
  return height;
}
"""

# Resize the remote tile the way a layout change would (ResizeObserver sees it).
SET_TILE_WIDTH_JS = """
(width) => {
  const figure = document.querySelector("figure[data-participant-id]");
  figure.style.width = width + "px";
  figure.style.maxHeight = "none";
  figure.style.justifySelf = "start";
}
"""


async def wait_for_height(page: Any, wanted: int, timeout: float) -> float:
    """Seconds until the decoded remote video is ``wanted`` pixels tall."""
    started = time.monotonic()
    seen = 0
    while time.monotonic() - started < timeout:
        seen = await page.evaluate(INBOUND_VIDEO_HEIGHT_JS)
        if seen == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"remote video stayed {seen} px tall, expected {wanted}")


async def wait_for_top_layer(page: Any, server: ServerProcess, timeout: float) -> None:
    started = time.monotonic()
    seen = top = 0
    while time.monotonic() - started < timeout:
        seen = await page.evaluate(INBOUND_VIDEO_HEIGHT_JS)
        layers = layers_of_first_video(server)
        top = layers[-1]["height"] if layers else 0
        if seen == top and seen > layers[1]["height"]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"remote video is {seen} px tall, the top layer {top} px")


async def wait_for_top_layer_off(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    top: dict[str, Any] = {}
    while time.monotonic() < deadline:
        layers = layers_of_first_video(server)
        top = layers[-1] if layers else {}
        if top and not top["requested"] and not top["active"]:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"the top layer is still encoded: {top}")


def layers_of_first_video(server: ServerProcess) -> list[dict[str, Any]]:
    for source in server.stats()["sources"].values():
        if source["kind"] == "video":
            layers: list[dict[str, Any]] = source["layers"]
            return layers
    return []


async def test_small_tile_gets_the_low_layer_and_a_large_one_the_high_layer(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Enseignante", LANDSCAPE_TABLET)
        pupil = await room.join("Élève", LANDSCAPE_TABLET)
        await pupil.wait_for_video_of(teacher)

        layers = layers_of_first_video(visio_server)
        assert [layer["rid"] for layer in layers] == ["q", "h", "f"]

        await pupil.page.evaluate(SET_TILE_WIDTH_JS, 240)  # a 180-px-tall thumbnail
        await wait_for_height(pupil.page, 180, 25)
        await pupil.page.screenshot(path=str(artifacts / "simulcast-small-tile.png"))
        # Nobody needs 720p now: the SFU asks the teacher's browser to stop encoding it
        # (publish_layers), and the browser does.
        await wait_for_top_layer_off(visio_server, 30)

        await pupil.page.set_viewport_size({"width": 1400, "height": 1100})
        await pupil.page.evaluate(SET_TILE_WIDTH_JS, 1300)  # a 975-px-tall stage
        # Chrome may encode the top layer below 720p for a while (its own bandwidth
        # adaptation): the pupil must get whatever the top layer carries.
        await wait_for_top_layer(pupil.page, visio_server, 40)
        await pupil.page.screenshot(path=str(artifacts / "simulcast-large-tile.png"))

        # Chrome subscribers answer transport-cc: the SFU estimates their links send-side.
        subscribers = visio_server.stats()["subscribers"].values()
        assert all(s["send_side"] and s["transport_feedback"] > 10 for s in subscribers), (
            subscribers)
        seen = {layer["rid"]: layer for layer in layers_of_first_video(visio_server)}
        assert seen["q"]["height"] == 180 and seen["f"]["height"] > seen["h"]["height"]
    except Exception as exc:
        failure = await room.report_failure(exc, "simulcast")
        stats = visio_server.stats()
        raise AssertionError(f"{failure}\nSFU sources: {stats['sources']}\n"
                             f"SFU subscribers: {stats['subscribers']}") from exc
