"""The SFU worker serving a web-client participant is killed (SIGKILL): the node stays up, the
page reconnects by itself, and both pages see each other again within 10 s."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_reconnect import REMOTE_PLAYING_JS
from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_web_client import LANDSCAPE_TABLET, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser


async def test_page_rejoins_after_its_worker_is_killed(
        browser: Any, two_workers: ServerProcess, artifacts: Path) -> None:
    room = Room(browser, two_workers.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Léo", PORTRAIT_810)
        await teacher.wait_for_video_of(pupil)
        await pupil.wait_for_video_of(teacher)
        workers = two_workers.stats()["workers"]
        assert [w["participants"] for w in workers] == [1, 1], workers

        started = time.monotonic()
        os.kill(workers[1]["pid"], signal.SIGKILL)  # the pupil's worker
        await pupil.page.wait_for_function(
            "() => document.body.classList.contains('reconnecting')", polling=20, timeout=5_000)
        await pupil.page.wait_for_function(REMOTE_PLAYING_JS, arg=teacher.name, timeout=10_000)
        await teacher.page.wait_for_function(REMOTE_PLAYING_JS, arg=pupil.name, timeout=10_000)
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"back after {elapsed:.1f} s"
        await pupil.page.screenshot(path=str(artifacts / "worker-failure-rejoined-810.png"))
        assert two_workers.process.poll() is None
        assert await teacher.page.locator("figure[data-participant-id]").count() == 1
        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "worker-failure") from exc
