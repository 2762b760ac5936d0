"""A screen share switches the others to the presentation view, and back when it stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_web_client import LANDSCAPE_TABLET, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

FEATURED_SCREEN_PLAYING_JS = """
() => {
  const figure = document.querySelector("figure.presentation.featured");
  return !!figure && !figure.hidden && figure.querySelector("video").videoWidth > 0;
}
"""


async def test_screen_share_gives_the_presentation_view(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Léo", PORTRAIT_810)
        await pupil.wait_for_video_of(teacher)
        await teacher.wait_for_video_of(pupil)

        await teacher.page.get_by_role("button", name="Présenter").click()
        await teacher.page.get_by_role("button", name="Arrêter").wait_for()
        await pupil.page.wait_for_function(FEATURED_SCREEN_PLAYING_JS, timeout=20_000)
        caption = pupil.page.locator("figure.presentation figcaption")
        assert "Présentation de Mme Martin" in await caption.inner_text()
        # The camera stays in its own tile, as a thumbnail.
        await pupil.wait_for_video_of(teacher)
        await teacher.page.wait_for_function(FEATURED_SCREEN_PLAYING_JS, timeout=10_000)
        await pupil.page.screenshot(path=str(artifacts / "view-presentation-810.png"))
        await teacher.page.screenshot(path=str(artifacts / "view-presentation-1024.png"))

        await teacher.page.get_by_role("button", name="Arrêter").click()
        await pupil.page.locator("figure.presentation").wait_for(state="detached",
                                                                 timeout=10_000)
        await pupil.wait_for_video_of(teacher)
        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "presentation") from exc
