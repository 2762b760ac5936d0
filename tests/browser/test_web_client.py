"""Two Chromium pages join one room through the web client and see each other."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

MEDIA_TIMEOUT_MS = 30_000

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

REMOTE_VIDEO_PLAYING_JS = """
(participantId) => {
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


async def join(
    browser: Any,
    base_url: str,
    room: str,
    name: str,
    viewport: dict[str, int],
    form_screenshot: Path | None = None,
) -> Participant:
    context = await browser.new_context(viewport=viewport, locale="fr-FR")
    page = await context.new_page()
    participant = Participant(name, page)
    await page.goto(f"{base_url}/?room={room}")
    room_input = page.get_by_label("Nom de la salle")
    assert await room_input.input_value() == room, "room not prefilled from ?room="
    await page.get_by_label("Votre nom").fill(name)
    if form_screenshot is not None:
        await page.screenshot(path=str(form_screenshot))
    await page.get_by_role("button", name="Rejoindre").click()
    await page.get_by_role("button", name="Quitter").wait_for()
    return participant


async def remote_ids(page: Any) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "video[data-participant-id]", "els => els.map(e => e.dataset.participantId)"
    )
    return ids


async def test_two_pages_exchange_video(
    browser: Any, visio_server: Any, artifacts_dir: Path
) -> None:
    base_url = visio_server.base_url.rstrip("/")
    room = f"browser-{secrets.token_hex(3)}"
    # Landscape and portrait tablet sizes.
    alice = await join(
        browser,
        base_url,
        room,
        "Mme Martin",
        {"width": 1024, "height": 768},
        form_screenshot=artifacts_dir / "web-client-join-form.png",
    )
    bob = await join(browser, base_url, room, "Léo", {"width": 768, "height": 1024})
    pair = [(alice, bob), (bob, alice)]

    try:
        for me, other in pair:
            # One remote tile, captioned with the other participant's name.
            await me.page.locator("figure[data-participant-id]", has_text=other.name).wait_for(
                timeout=MEDIA_TIMEOUT_MS
            )
            ids = await remote_ids(me.page)
            assert len(ids) == 1, f"{me.name} sees remote tiles {ids}"
            await me.page.wait_for_function(
                REMOTE_VIDEO_PLAYING_JS, arg=ids[0], timeout=MEDIA_TIMEOUT_MS
            )

        for me, _ in pair:
            before = await me.page.evaluate(FRAMES_DECODED_JS)
            await asyncio.sleep(2)
            after = await me.page.evaluate(FRAMES_DECODED_JS)
            assert after > before, f"{me.name}: framesDecoded {before} -> {after}"

        for me, _ in pair:
            status = me.page.get_by_role("status")
            assert await status.get_attribute("data-kind") != "error", await status.inner_text()
            slug = "teacher" if me is alice else "pupil"
            await me.page.screenshot(path=str(artifacts_dir / f"web-client-{slug}.png"))

        # Leaving closes both peer connections and removes the tile on the other side.
        await bob.page.get_by_role("button", name="Quitter").click()
        await bob.page.get_by_role("button", name="Rejoindre").wait_for()
        assert await bob.page.evaluate("window.visio.pcs.publish === null")
        await alice.page.locator("figure[data-participant-id]").wait_for(
            state="detached", timeout=10_000
        )
    except Exception as exc:
        diagnostics = "\n".join(p.diagnostics() for p in (alice, bob))
        for p in (alice, bob):
            slug = "teacher" if p is alice else "pupil"
            await p.page.screenshot(path=str(artifacts_dir / f"web-client-{slug}-failure.png"))
        raise AssertionError(f"{exc}\n{diagnostics}") from exc
