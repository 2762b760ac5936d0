"""Connection-quality indicators: one for our own link, one per remote tile, each
a spoken three-level label; the grading thresholds themselves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_room_features import PORTRAIT_810, console_errors, tile_of
from tests.browser.test_web_client import LANDSCAPE_TABLET, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

LEVEL = "(bonne|moyenne|faible)"
GRADES_JS = """
async () => {
  const { grade } = await import("./quality.js");
  return [
    grade({}),
    grade({ loss: 0.03 }),
    grade({ loss: 0.1 }),
    grade({ rtt: 0.3 }),
    grade({ rtt: 0.6 }),
    grade({ jitter: 0.05 }),
    grade({ starved: true }),
    grade({ limited: true }),
  ];
}
"""


async def test_own_and_tile_quality_are_shown_and_labelled(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Léo", PORTRAIT_810)
        await teacher.wait_for_video_of(pupil)
        await pupil.wait_for_video_of(teacher)
        for me, other in ((teacher, pupil), (pupil, teacher)):
            own = me.page.locator("figure.local").get_by_role(
                "img", name=re.compile(f"^Votre connexion : {LEVEL}$"))
            await own.wait_for(timeout=10_000)
            remote = tile_of(me, other).get_by_role(
                "img", name=re.compile(f"^Connexion : {LEVEL}$"))
            await remote.wait_for(timeout=10_000)
            # On loopback nothing is lost or late.
            assert await remote.get_attribute("data-level") in ("good", "fair")
        await teacher.page.screenshot(path=str(artifacts / "quality-1024.png"))

        grades = await teacher.page.evaluate(GRADES_JS)
        assert grades == ["good", "fair", "poor", "fair", "poor", "fair", "fair", "fair"]
        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "quality") from exc
