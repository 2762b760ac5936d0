"""Pre-join screen: camera preview, microphone level, device choice, and the
messages for a refused camera, an expired meeting link and a full room."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from signaling.booking.tokens import ALGORITHM, AUDIENCE, ISSUER
from tests.browser.test_room_features import PORTRAIT_810, console_errors
from tests.browser.test_web_client import LANDSCAPE_TABLET, Participant
from tests.conftest import ServerProcess, start_server, stop_server

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000
PREVIEW_PLAYING_JS = "() => document.getElementById('preview').videoWidth > 0"
MIC_LEVEL_MOVES_JS = "() => document.getElementById('mic-level').value > 0.05"


async def open_prejoin(browser: Any, url: str, viewport: dict[str, int], name: str,
                       **context_options: Any) -> Participant:
    context = await browser.new_context(viewport=viewport, locale="fr-FR", **context_options)
    page = await context.new_page()
    person = Participant(name, page)
    await page.goto(url)
    return person


async def option_labels(page: Any, label: str) -> list[str]:
    labels: list[str] = await page.get_by_label(label, exact=True).evaluate(
        "(select) => [...select.options].map((o) => o.textContent)")
    return labels


async def test_preview_devices_and_join_without_camera(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    people: list[Participant] = []
    room = f"prejoin-{secrets.token_hex(3)}"
    for viewport, slug in ((LANDSCAPE_TABLET, "1024"), (PORTRAIT_810, "810")):
        me = await open_prejoin(browser, f"{visio_server.base_url}/?room={room}", viewport,
                                f"Mme Martin {slug}")
        people.append(me)
        page = me.page
        await page.wait_for_function(PREVIEW_PLAYING_JS, timeout=TIMEOUT_MS)
        # A touch on the page lets the level meter's audio context run (autoplay rules).
        await page.get_by_label("Votre nom").click()
        await page.get_by_label("Votre nom").fill(me.name)
        await page.wait_for_function(MIC_LEVEL_MOVES_JS, timeout=TIMEOUT_MS)
        assert await page.get_by_role("meter", name="Niveau du micro").count() == 1
        cameras = await option_labels(page, "Caméra")
        mics = await option_labels(page, "Micro")
        assert cameras[-1] == "Sans caméra" and len(cameras) >= 2, cameras
        assert mics[-1] == "Sans micro" and len(mics) >= 2, mics
        assert await page.get_by_role("alert").is_hidden()
        await page.screenshot(path=str(artifacts / f"prejoin-{slug}.png"))

    # Another microphone: the preview's audio track follows the choice.
    page = people[0].page
    await page.get_by_label("Micro", exact=True).select_option(label="Fake Audio Input 1")
    await page.wait_for_function(
        "() => window.visio.preview().includes('audio:Fake Audio Input 1')", timeout=TIMEOUT_MS)
    # No camera: the preview says so, and the room gets this participant without video.
    await page.get_by_label("Caméra", exact=True).select_option(label="Sans caméra")
    await page.get_by_text("Caméra éteinte").wait_for(timeout=TIMEOUT_MS)
    assert await page.evaluate("window.visio.preview()") == ["audio:Fake Audio Input 1"]
    await page.get_by_role("button", name="Rejoindre").click()
    await page.get_by_role("button", name="Quitter").wait_for(timeout=TIMEOUT_MS)
    assert await page.get_by_role("button", name="Caméra", exact=True).is_disabled()
    await page.wait_for_function(
        "() => window.visio.pcs.publish && window.visio.pcs.publish.getSenders()"
        ".some((s) => s.track && s.track.kind === 'audio')", timeout=TIMEOUT_MS)
    assert await page.evaluate(
        "window.visio.pcs.publish.getSenders().every((s) => !s.track || s.track.kind !== 'video')")
    # Leaving turns the camera off; it comes back only when asked.
    await page.get_by_role("button", name="Quitter").click()
    await page.get_by_text("Caméra et micro éteints.").wait_for(timeout=TIMEOUT_MS)
    assert await page.evaluate("window.visio.preview()") is None
    await page.get_by_role("button", name="Rallumer la caméra et le micro").click()
    await page.wait_for_function(PREVIEW_PLAYING_JS, timeout=TIMEOUT_MS)

    errors = console_errors(people)
    assert not errors, errors


async def test_camera_refused_joins_with_microphone_only(
        prompting_browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    room = f"denied-{secrets.token_hex(3)}"
    me = await open_prejoin(prompting_browser, f"{visio_server.base_url}/?room={room}",
                            PORTRAIT_810, "Léo", permissions=["microphone"])
    page = me.page
    notice = page.locator("#media-notice")
    await notice.wait_for(timeout=TIMEOUT_MS)
    text = await notice.inner_text()
    assert "pas l'autorisation d'utiliser la caméra" in text, text
    assert "micro seulement" in text, text
    await page.get_by_role("button", name="Réessayer").wait_for()
    await page.get_by_label("Votre nom").fill(me.name)
    await page.screenshot(path=str(artifacts / "prejoin-camera-refused-810.png"))
    await page.get_by_role("button", name="Rejoindre").click()
    await page.get_by_role("button", name="Quitter").wait_for(timeout=TIMEOUT_MS)
    assert await page.get_by_role("button", name="Caméra", exact=True).is_disabled()
    assert await page.get_by_role("button", name="Micro", exact=True).is_enabled()

    # Nothing allowed at all: still a way in, to watch, listen and chat.
    watcher = await open_prejoin(prompting_browser, f"{visio_server.base_url}/?room={room}",
                                 LANDSCAPE_TABLET, "Inès")
    notice = watcher.page.locator("#media-notice")
    await notice.filter(has_text="sans caméra ni micro").wait_for(timeout=TIMEOUT_MS)
    assert "pas l'autorisation d'utiliser la caméra ni le micro" in await notice.inner_text()
    await watcher.page.get_by_label("Votre nom").fill(watcher.name)
    await watcher.page.screenshot(path=str(artifacts / "prejoin-no-devices-1024.png"))
    await watcher.page.get_by_role("button", name="Rejoindre").click()
    await watcher.page.get_by_role("button", name="Quitter").wait_for(timeout=TIMEOUT_MS)
    assert await watcher.page.get_by_role("button", name="Micro", exact=True).is_disabled()
    await watcher.page.locator("figure[data-participant-id]", has_text="Léo").wait_for(
        timeout=TIMEOUT_MS)
    errors = console_errors([me, watcher])
    assert not errors, errors


def expired_token(secret: str, room: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "room": room, "bkg": 1, "rid": 1,
              "role": "participant", "iat": now - 7200, "nbf": now - 7200, "exp": now - 60}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def test_expired_link_and_full_room(browser: Any, tmp_path: Path,
                                          artifacts: Path) -> None:
    secret = secrets.token_hex(32)
    server = start_server(tmp_path, "--max-participants", "1", "--secret-key", secret)
    people: list[Participant] = []
    try:
        room = f"full-{secrets.token_hex(3)}"
        token = expired_token(secret, room)
        late = await open_prejoin(browser, f"{server.base_url}/?room={room}&token={token}",
                                  LANDSCAPE_TABLET, "Inès")
        people.append(late)
        await late.page.get_by_label("Votre nom").fill(late.name)
        await late.page.get_by_role("button", name="Rejoindre").click()
        alert = late.page.get_by_role("alert")
        await alert.filter(has_text="Ce lien de réunion a expiré").wait_for(timeout=TIMEOUT_MS)
        # A dead link: only the reason stays, no form to try again, the camera is off.
        assert await late.page.get_by_role("button", name="Rejoindre").is_hidden()
        assert await late.page.evaluate("window.visio.preview()") is None
        await late.page.screenshot(path=str(artifacts / "prejoin-link-expired-1024.png"))

        first = await open_prejoin(browser, f"{server.base_url}/?room={room}",
                                   LANDSCAPE_TABLET, "Mme Martin")
        second = await open_prejoin(browser, f"{server.base_url}/?room={room}",
                                    PORTRAIT_810, "Léo")
        people += [first, second]
        for person in (first, second):
            await person.page.get_by_label("Votre nom").fill(person.name)
            await person.page.get_by_role("button", name="Rejoindre").click()
            if person is first:
                await first.page.get_by_role("button", name="Quitter").wait_for(
                    timeout=TIMEOUT_MS)
        alert = second.page.get_by_role("alert")
        await alert.filter(has_text="La salle est complète").wait_for(timeout=TIMEOUT_MS)
        # Refused at the door: the preview is back, ready for another try.
        await second.page.wait_for_function(PREVIEW_PLAYING_JS, timeout=TIMEOUT_MS)
        assert await second.page.get_by_role("button", name="Rejoindre").is_enabled()
        await second.page.screenshot(path=str(artifacts / "prejoin-room-full-810.png"))
        errors = console_errors(people)
        assert not errors, errors
    finally:
        stop_server(server)
