"""Chromium pages join rooms through the web client and see each other."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

MEDIA_TIMEOUT_MS = 30_000
LANDSCAPE_TABLET = {"width": 1024, "height": 768}
PORTRAIT_TABLET = {"width": 768, "height": 1024}

# Sum of framesDecoded over the subscribe PC's inbound video streams.
FRAMES_DECODED_JS = """
async () => {
  const pc = window.visio && window.visio.pcs && window.visio.pcs.subscribe;
  if (!pc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      frames += report.framesDecoded || 0;
    }
  });
  return frames;
}
"""

# Throws (ending the wait at once) when the page reports an error.
REMOTE_VIDEO_PLAYING_JS = """
(participantId) => {
  const status = document.querySelector('[role="status"]');
  if (status && status.dataset.kind === "error") {
    throw new Error(`status line shows an error: ${status.textContent}`);
  }
  const video = document.querySelector(`video[data-participant-id="${participantId}"]`);
  return !!video && video.videoWidth > 0;
}
"""


class Participant:
    def __init__(self, name: str, page: Any) -> None:
        self.name = name
        self.page = page
        self.log: list[str] = []
        page.on("console", lambda msg: self.log.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda err: self.log.append(f"pageerror: {err}"))

    def diagnostics(self) -> str:
        return f"--- {self.name} console ---\n" + "\n".join(self.log[-40:])

    async def remote_ids(self) -> list[str]:
        ids: list[str] = await self.page.eval_on_selector_all(
            "video[data-participant-id]", "els => els.map(e => e.dataset.participantId)"
        )
        return ids

    async def wait_for_video_of(self, other: Participant) -> None:
        """Waits for the tile captioned with other's name to show decoded video."""
        tile = self.page.locator("figure[data-participant-id]", has_text=other.name)
        await tile.wait_for(timeout=MEDIA_TIMEOUT_MS)
        participant_id = await tile.get_attribute("data-participant-id")
        await self.page.wait_for_function(
            REMOTE_VIDEO_PLAYING_JS, arg=participant_id, timeout=MEDIA_TIMEOUT_MS
        )

    async def frames_decoded(self) -> int:
        frames: int = await self.page.evaluate(FRAMES_DECODED_JS)
        return frames

    async def assert_no_error_status(self) -> None:
        status = self.page.get_by_role("status")
        assert await status.get_attribute("data-kind") != "error", await status.inner_text()

    async def leave(self) -> None:
        await self.page.get_by_role("button", name="Quitter").click()
        await self.page.get_by_role("button", name="Rejoindre").wait_for()


class Room:
    """Opens one browser context per participant; dumps diagnostics on failure."""

    def __init__(self, browser: Any, base_url: str, artifacts_dir: Path) -> None:
        self.browser = browser
        self.base_url = base_url.rstrip("/")
        self.artifacts_dir = artifacts_dir
        self.name = f"browser-{secrets.token_hex(3)}"
        self.people: list[Participant] = []

    async def join(
        self, name: str, viewport: dict[str, int], form_screenshot: str | None = None,
        query: str = "",
    ) -> Participant:
        context = await self.browser.new_context(viewport=viewport, locale="fr-FR")
        page = await context.new_page()
        person = Participant(name, page)
        self.people.append(person)
        await page.goto(f"{self.base_url}/?room={self.name}{query}")
        room_input = page.get_by_label("Nom de la salle")
        assert await room_input.input_value() == self.name, "room not prefilled from ?room="
        await page.get_by_label("Votre nom").fill(name)
        if form_screenshot:
            await page.screenshot(path=str(self.artifacts_dir / form_screenshot))
        await page.get_by_role("button", name="Rejoindre").click()
        await page.get_by_role("button", name="Quitter").wait_for()
        return person

    def assert_no_console_errors(self) -> None:
        """Fails on any error the pages logged or threw (must-show 4 of issue 5)."""
        errors = [f"{p.name}: {line}" for p in self.people for line in p.log
                  if line.startswith(("error:", "pageerror:"))]
        assert not errors, errors

    async def report_failure(self, exc: BaseException, prefix: str) -> AssertionError:
        for i, person in enumerate(self.people):
            path = self.artifacts_dir / f"{prefix}-failure-{i}.png"
            await person.page.screenshot(path=str(path))
        diagnostics = "\n".join(p.diagnostics() for p in self.people)
        return AssertionError(f"{exc}\n{diagnostics}")


@pytest.fixture
async def room(browser: Any, visio_server: Any, artifacts: Path) -> AsyncIterator[Room]:
    """`artifacts` (tests/conftest.py) is the gitignored test-artifacts/ directory."""
    yield Room(browser, visio_server.base_url, artifacts)


async def test_two_pages_exchange_video(room: Room) -> None:
    teacher = await room.join(
        "Mme Martin", LANDSCAPE_TABLET, form_screenshot="web-client-join-form.png"
    )
    pupil = await room.join("Léo", PORTRAIT_TABLET)
    pair = [(teacher, pupil), (pupil, teacher)]
    try:
        for me, other in pair:
            await me.wait_for_video_of(other)
            ids = await me.remote_ids()
            assert len(ids) == 1, f"{me.name} sees remote tiles {ids}"

        for me, _ in pair:
            before = await me.frames_decoded()
            await asyncio.sleep(2)
            after = await me.frames_decoded()
            assert after > before, f"{me.name}: framesDecoded {before} -> {after}"

        for me, slug in ((teacher, "teacher"), (pupil, "pupil")):
            await me.assert_no_error_status()
            await me.page.screenshot(path=str(room.artifacts_dir / f"web-client-{slug}.png"))

        # Leaving closes both peer connections and removes the tile on the other side.
        await pupil.leave()
        assert await pupil.page.evaluate("window.visio.pcs.publish === null")
        assert await pupil.page.evaluate("window.visio.pcs.subscribe === null")
        await teacher.page.locator("figure[data-participant-id]").wait_for(
            state="detached", timeout=10_000
        )
        room.assert_no_console_errors()
    except Exception as exc:
        raise await room.report_failure(exc, "web-client-pair") from exc


async def test_newcomer_after_departure(room: Room) -> None:
    """The SFU recycles the m-lines of a source that left for the next one."""
    teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
    first = await room.join("Inès", PORTRAIT_TABLET)
    try:
        await teacher.wait_for_video_of(first)
        await first.leave()
        await teacher.page.locator("figure[data-participant-id]").wait_for(
            state="detached", timeout=10_000
        )

        second = await room.join("Noé", PORTRAIT_TABLET)
        await teacher.wait_for_video_of(second)
        await second.wait_for_video_of(teacher)
        ids = await teacher.remote_ids()
        assert len(ids) == 1, f"teacher sees remote tiles {ids}"
        before = await teacher.frames_decoded()
        await asyncio.sleep(2)
        assert await teacher.frames_decoded() > before
        await teacher.assert_no_error_status()
        await teacher.page.screenshot(path=str(room.artifacts_dir / "web-client-newcomer.png"))
        room.assert_no_console_errors()
    except Exception as exc:
        raise await room.report_failure(exc, "web-client-newcomer") from exc
