"""Three tablets in one room: mic state, hand, chat, participant list and host controls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_web_client import LANDSCAPE_TABLET, Participant, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

PORTRAIT_810 = {"width": 810, "height": 1080}
TIMEOUT_MS = 10_000


def tile_of(me: Participant, other: Participant) -> Any:
    return me.page.locator("figure[data-participant-id]", has_text=other.name)


def console_errors(people: list[Participant]) -> list[str]:
    return [f"{p.name}: {line}" for p in people for line in p.log
            if line.startswith(("error:", "pageerror:"))]


async def expect_class(locator: Any, name: str, present: bool = True) -> None:
    """Waits until the element has (or has not) the CSS class ``name``."""
    handle = await locator.element_handle(timeout=TIMEOUT_MS)
    await locator.page.wait_for_function(
        "([el, name, present]) => el.classList.contains(name) === present",
        arg=[handle, name, present], timeout=TIMEOUT_MS)


async def test_state_chat_and_host_controls(browser: Any, visio_server: ServerProcess,
                                            artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        host = await room.join("Mme Martin", LANDSCAPE_TABLET,
                               form_screenshot="room-prejoin-1024.png")
        leo = await room.join("Léo", PORTRAIT_810, form_screenshot="room-prejoin-810.png")
        ines = await room.join("Inès", LANDSCAPE_TABLET)
        await host.wait_for_video_of(leo)
        await host.wait_for_video_of(ines)
        await leo.wait_for_video_of(host)
        await ines.wait_for_video_of(leo)

        # Léo turns his microphone off and raises his hand: the others see both.
        await leo.page.get_by_role("button", name="Micro", exact=True).click()
        assert await leo.page.evaluate(
            "window.visio.pcs.publish.getSenders().find(s => s.track && s.track.kind === 'audio')"
            ".track.enabled") is False
        await leo.page.get_by_role("button", name="Lever la main").click()
        await expect_class(tile_of(host, leo), "mic-off")
        await expect_class(tile_of(ines, leo), "hand-up")
        await leo.page.get_by_role("button", name="Baisser la main").wait_for()

        # Chat: Léo writes, Inès sees an unread badge then the message.
        await leo.page.locator("#open-chat").click()
        await leo.page.get_by_label("Votre message").fill("Bonjour <b>madame</b> !")
        await leo.page.get_by_role("button", name="Envoyer").click()
        await ines.page.locator("#unread").wait_for(timeout=TIMEOUT_MS)
        await ines.page.locator("#open-chat").click()
        line = ines.page.locator(".chat-line", has_text="Bonjour <b>madame</b> !")
        await line.wait_for(timeout=TIMEOUT_MS)
        await leo.page.screenshot(path=str(artifacts / "room-grid-chat-810.png"))

        # The host's participant list shows everyone's state.
        await host.page.locator("#open-people").click()
        row = host.page.locator(".person", has_text="Léo")
        await row.get_by_role("img", name="Main levée").wait_for(timeout=TIMEOUT_MS)
        await row.get_by_role("img", name="Micro coupé").wait_for(timeout=TIMEOUT_MS)
        await host.page.screenshot(path=str(artifacts / "room-grid-people-1024.png"))

        # Host mutes Inès: her track is disabled and she is told why.
        await host.page.get_by_role("button", name="Couper le micro de Inès").click()
        await ines.page.get_by_role("status").filter(
            has_text="Mme Martin a coupé votre micro").wait_for(timeout=TIMEOUT_MS)
        assert await ines.page.evaluate(
            "window.visio.pcs.publish.getSenders().find(s => s.track && s.track.kind === 'audio')"
            ".track.enabled") is False
        await ines.page.get_by_role("button", name="Micro coupé").wait_for()
        await expect_class(tile_of(leo, ines), "mic-off")

        # Host lowers all hands.
        await host.page.get_by_role("button", name="Baisser toutes les mains").click()
        await leo.page.get_by_role("button", name="Lever la main").wait_for(timeout=TIMEOUT_MS)

        # Host removes Léo (after confirming): he is back at the form, told why.
        host.page.once("dialog", lambda dialog: dialog.accept())
        await host.page.get_by_role("button", name="Exclure Léo").click()
        await leo.page.get_by_role("alert").filter(
            has_text="Mme Martin vous a retiré").wait_for(timeout=TIMEOUT_MS)
        await leo.page.get_by_role("button", name="Rejoindre").wait_for()
        await tile_of(ines, leo).wait_for(state="detached", timeout=TIMEOUT_MS)

        # Host locks the room: a newcomer is refused with a clear message.
        await host.page.get_by_role("button", name="Verrouiller la salle").click()
        await ines.page.locator("#lock-label").wait_for(timeout=TIMEOUT_MS)
        page = leo.page
        await page.get_by_role("button", name="Rejoindre").click()
        await page.get_by_role("alert").filter(
            has_text="verrouillée").wait_for(timeout=TIMEOUT_MS)
        await host.page.screenshot(path=str(artifacts / "room-host-locked-1024.png"))

        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "room-features") from exc


async def test_english_labels(browser: Any, visio_server: ServerProcess,
                              artifacts: Path) -> None:
    context = await browser.new_context(viewport=LANDSCAPE_TABLET)
    page = await context.new_page()
    log: list[str] = []
    page.on("console", lambda msg: log.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: log.append(f"pageerror: {err}"))
    await page.goto(f"{visio_server.base_url.rstrip('/')}/?lang=en&room=english")
    await page.get_by_label("Room name").wait_for()
    await page.get_by_label("Camera", exact=True).wait_for()
    await page.get_by_label("Microphone", exact=True).wait_for()
    assert await page.get_by_role("meter", name="Microphone level").count() == 1
    await page.get_by_label("Your name").fill("Ann")
    await page.wait_for_function("() => document.getElementById('preview').videoWidth > 0")
    await page.screenshot(path=str(artifacts / "prejoin-en-1024.png"))
    await page.get_by_role("button", name="Join").click()
    await page.get_by_role("button", name="Mic", exact=True).wait_for()
    await page.get_by_role("button", name="Raise hand").wait_for()
    errors = [line for line in log if line.startswith(("error:", "pageerror:"))]
    assert not errors, errors
    await context.close()
