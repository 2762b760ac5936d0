"""Grid pages, speaker view: off-page tiles stop receiving video and get it back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_web_client import LANDSCAPE_TABLET, Participant, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

# Bytes received on the subscribe m-lines that carry one participant's video.
VIDEO_BYTES_OF_JS = """
async (participantId) => {
  const mids = Object.entries(window.visio.tracks())
    .filter(([, info]) => info && info.kind === "video" && info.participant_id === participantId)
    .map(([mid]) => mid);
  let bytes = 0;
  (await window.visio.pcs.subscribe.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video" && mids.includes(report.mid)) {
      bytes += report.bytesReceived || 0;
    }
  });
  return bytes;
}
"""


async def participant_id(me: Participant, other: Participant) -> str:
    figure = me.page.locator("figure[data-participant-id]", has_text=other.name)
    await figure.wait_for(state="attached", timeout=20_000)
    value = await figure.get_attribute("data-participant-id")
    assert value
    return str(value)


async def video_bytes(me: Participant, other_id: str) -> int:
    value: int = await me.page.evaluate(VIDEO_BYTES_OF_JS, other_id)
    return value


async def bytes_growth(me: Participant, other_id: str, seconds: float = 2.0) -> int:
    before = await video_bytes(me, other_id)
    await asyncio.sleep(seconds)
    return await video_bytes(me, other_id) - before


async def test_grid_pages_and_speaker_view(browser: Any, visio_server: ServerProcess,
                                           artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        teacher = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Inès", LANDSCAPE_TABLET)
        # Two tiles per page: the viewer's own tile and Mme Martin's on page 1, Inès on page 2.
        viewer = await room.join("Léo", PORTRAIT_810, query="&per_page=2")
        await teacher.wait_for_video_of(pupil)
        await viewer.wait_for_video_of(teacher)
        await teacher.wait_for_video_of(viewer)
        await teacher.page.screenshot(path=str(artifacts / "view-grid-1024.png"))

        pupil_id = await participant_id(viewer, pupil)
        teacher_id = await participant_id(viewer, teacher)
        assert await viewer.page.locator(f'figure[data-participant-id="{pupil_id}"]').is_hidden()
        await viewer.page.get_by_text("Page 1 sur 2").wait_for()
        await viewer.page.screenshot(path=str(artifacts / "view-grid-page1-810.png"))
        await asyncio.sleep(1.5)  # the pause reaches the SFU; in-flight packets land
        assert await bytes_growth(viewer, pupil_id) == 0, "an off-page tile still gets video"
        assert await bytes_growth(viewer, teacher_id) > 0

        await viewer.page.get_by_role("button", name="Page suivante").click()
        await viewer.wait_for_video_of(pupil)
        assert await bytes_growth(viewer, pupil_id) > 0, "the tile back on screen gets no video"
        await asyncio.sleep(1.5)
        assert await bytes_growth(viewer, teacher_id) == 0, "page 1 is hidden now"
        await viewer.page.screenshot(path=str(artifacts / "view-grid-page2-810.png"))

        for me, slug in ((teacher, "1024"), (viewer, "810")):
            await me.page.get_by_role("button", name="Vue orateur").click()
            featured = me.page.locator("figure.featured")
            await featured.wait_for(timeout=5_000)
            await me.page.wait_for_function(
                "() => { const f = document.querySelector('figure.featured');"
                " return f && !f.classList.contains('paused')"
                " && f.querySelector('video').videoWidth > 0; }", timeout=15_000)
            await me.page.screenshot(path=str(artifacts / f"view-speaker-{slug}.png"))

        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "views") from exc
