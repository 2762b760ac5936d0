"""A thumbnail scrolled out of the filmstrip stops receiving video, and gets it
back when scrolled into view: scrolling, not pagination (every tile stays in
the page; the IntersectionObserver sees the strip clip it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_presentation import FEATURED_SCREEN_PLAYING_JS
from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_views import bytes_growth, participant_id
from tests.browser.test_web_client import LANDSCAPE_TABLET, Participant, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

SETTLE_S = 1.5  # the constraint reaches the SFU; packets in flight land

# Whether the tile's box lies (even partly) inside the strip's visible width.
IN_STRIP_JS = """
(figure) => {
  const strip = figure.parentElement.getBoundingClientRect();
  const box = figure.getBoundingClientRect();
  return box.right > strip.left && box.left < strip.right;
}
"""


async def scroll_strip(me: Participant, to_end: bool) -> None:
    await me.page.locator("#strip").evaluate(
        "(strip, toEnd) => strip.scrollTo({left: toEnd ? strip.scrollWidth : 0})", to_end)


async def in_view(me: Participant, figure_selector: str) -> bool:
    shown: bool = await me.page.locator(figure_selector).evaluate(IN_STRIP_JS)
    return shown


async def test_scrolled_out_thumbnail_stops_receiving(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Inès", LANDSCAPE_TABLET)
        viewer = await room.join("Léo", PORTRAIT_810)
        await viewer.wait_for_video_of(pupil)
        await viewer.wait_for_video_of(teacher)
        # A shared screen fills the stage: the cameras go to the filmstrip.
        await teacher.page.get_by_role("button", name="Présenter").click()
        await viewer.page.wait_for_function(FEATURED_SCREEN_PLAYING_JS, timeout=20_000)
        pupil_id = await participant_id(viewer, pupil)
        tile = f'#strip figure[data-participant-id="{pupil_id}"]'
        await viewer.page.locator(tile).wait_for(timeout=10_000)
        assert await viewer.page.locator("#pager").is_hidden(), "no pages in the filmstrip"

        # Portrait: two thumbnails fit, Inès's (the third) is off to the right.
        await scroll_strip(viewer, to_end=False)
        await asyncio.sleep(SETTLE_S)
        assert not await in_view(viewer, tile)
        assert await bytes_growth(viewer, pupil_id) == 0, "a scrolled-out tile still gets video"
        await viewer.page.screenshot(path=str(artifacts / "scroll-strip-start-810.png"))

        for round_trip in range(2):
            if round_trip == 0:
                await scroll_strip(viewer, to_end=True)
            else:  # as a finger or a keyboard would: the strip's arrow
                await viewer.page.get_by_role("button", name="Vignettes suivantes").click()
                await viewer.page.locator(tile).wait_for(timeout=5_000)
                await viewer.page.wait_for_function(
                    f"() => ({IN_STRIP_JS})(document.querySelector('{tile}'))", timeout=5_000)
            assert await in_view(viewer, tile)
            await viewer.wait_for_video_of(pupil)
            assert await bytes_growth(viewer, pupil_id) > 0, (
                f"round {round_trip}: the tile scrolled back gets no video")
            if round_trip == 0:
                await viewer.page.screenshot(path=str(artifacts / "scroll-strip-end-810.png"))
            await scroll_strip(viewer, to_end=False)
            assert not await in_view(viewer, tile)
            assert not await viewer.page.locator(tile).is_hidden(), "scrolled, not hidden"
            await asyncio.sleep(SETTLE_S)
            assert await bytes_growth(viewer, pupil_id) == 0, (
                f"round {round_trip}: the tile scrolled away still gets video")

        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "scroll") from exc
