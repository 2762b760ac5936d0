"""A participant whose signaling socket drops rejoins by itself within 10 s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_web_client import LANDSCAPE_TABLET, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

REMOTE_PLAYING_JS = """
(name) => [...document.querySelectorAll("figure[data-participant-id]")].some(
  (f) => f.textContent.includes(name) && f.querySelector("video").videoWidth > 0)
"""


async def test_rejoins_after_the_socket_closes(browser: Any, visio_server: ServerProcess,
                                               artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Léo", PORTRAIT_810)
        await teacher.wait_for_video_of(pupil)
        await pupil.wait_for_video_of(teacher)
        await pupil.page.get_by_role("button", name="Lever la main").click()
        old_id = await teacher.page.get_attribute("figure[data-participant-id]",
                                                  "data-participant-id")

        started = time.monotonic()
        await pupil.page.evaluate("window.visio.ws.close()")
        await pupil.page.wait_for_function("() => document.body.classList.contains('reconnecting')",
                                           polling=20, timeout=3_000)
        await pupil.page.get_by_role("status").filter(has_text="reconnexion").wait_for()
        await pupil.page.screenshot(path=str(artifacts / "reconnecting-810.png"))

        await pupil.page.wait_for_function(REMOTE_PLAYING_JS, arg=teacher.name, timeout=10_000)
        await teacher.page.wait_for_function(REMOTE_PLAYING_JS, arg=pupil.name, timeout=10_000)
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"back after {elapsed:.1f} s"
        assert not await pupil.page.evaluate("document.body.classList.contains('reconnecting')")
        new_id = await teacher.page.get_attribute("figure[data-participant-id]",
                                                  "data-participant-id")
        assert new_id != old_id, "the pupil should have rejoined as a new participant"
        # The raised hand survives the reconnection.
        tile = teacher.page.locator("figure[data-participant-id]", has_text=pupil.name)
        await teacher.page.wait_for_function(
            "(el) => el.classList.contains('hand-up')", arg=await tile.element_handle(),
            timeout=5_000)
        assert await teacher.page.locator("figure[data-participant-id]").count() == 1

        # The host (first in this development-mode room) drops too: she comes back
        # host, not as a participant, although the pupil is in the room now.
        await teacher.page.evaluate("window.visio.ws.close()")
        await teacher.page.wait_for_function(
            "() => document.body.classList.contains('reconnecting')", polling=20, timeout=3_000)
        await teacher.page.wait_for_function(REMOTE_PLAYING_JS, arg=pupil.name, timeout=10_000)
        await teacher.page.locator("#open-people").click()
        await teacher.page.get_by_role("button", name="Couper tous les micros").wait_for()
        await pupil.page.locator("#open-people").click()
        row = pupil.page.locator(".person", has_text="Mme Martin")
        await row.get_by_text("Animateur").wait_for(timeout=10_000)

        # A reload (Safari dropping the tab) keeps the role too: same tab, within 2 min.
        await teacher.page.reload()
        await teacher.page.get_by_role("button", name="Rejoindre").click()
        await teacher.page.wait_for_function(REMOTE_PLAYING_JS, arg=pupil.name, timeout=15_000)
        await teacher.page.locator("#open-people").click()
        await teacher.page.get_by_role("button", name="Couper tous les micros").wait_for()

        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "reconnect") from exc
