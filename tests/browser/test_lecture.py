"""Lecture mode: only the host and presenters send video; the host grants the right."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_room_features import PORTRAIT_810, console_errors, expect_class, tile_of
from tests.browser.test_views import bytes_growth, participant_id
from tests.browser.test_web_client import LANDSCAPE_TABLET, Participant, Room
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000
SETTLE_S = 1.5  # a constraint reaches the SFU; packets in flight land
CAMERA_SENT_JS = """
() => {
  const pc = window.visio.pcs.publish;
  return !!pc && pc.getTransceivers().some(
    (t) => t.sender.track && t.sender.track.kind === "video" && t.currentDirection === "sendonly");
}
"""


async def test_lecture_mode_and_presenter_right(browser: Any, visio_server: ServerProcess,
                                                artifacts: Path) -> None:
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        host = await room.join("Mme Martin", LANDSCAPE_TABLET)
        pupil = await room.join("Léo", PORTRAIT_810)
        await host.wait_for_video_of(pupil)
        await pupil.wait_for_video_of(host)
        pupil_id = await participant_id(host, pupil)
        camera = pupil.page.get_by_role("button", name="Caméra", exact=True)

        await host.page.locator("#open-people").click()
        await host.page.get_by_role("button", name="Mode conférence").click()
        await pupil.page.get_by_role("status").filter(
            has_text="Mme Martin a activé le mode conférence").wait_for(timeout=TIMEOUT_MS)
        await pupil.page.locator("#lecture-label").wait_for()
        assert await camera.is_disabled(), "the pupil's camera button stays usable"
        assert "réservé à l'animateur et aux présentateurs" in (
            await camera.get_attribute("title") or "")
        await pupil.page.wait_for_function(f"() => !({CAMERA_SENT_JS})()", timeout=TIMEOUT_MS)
        await expect_class(tile_of(host, pupil), "withheld")
        await asyncio.sleep(1.5)  # packets in flight land
        assert await bytes_growth(host, pupil_id) == 0, "a non-presenter's video still arrives"
        await pupil.page.screenshot(path=str(artifacts / "lecture-pupil-810.png"))

        # A client that insists gets a typed refusal from the server.
        await pupil.page.evaluate("""async () => {
          const pc = window.visio.pcs.publish;
          const camera = pc.getTransceivers().find((t) => t.sender.track
            && t.sender.track.kind === "video");
          camera.direction = "sendonly";
          await pc.setLocalDescription(await pc.createOffer());
          window.visio.ws.send(JSON.stringify(
            {type: "publish_offer", id: "insist", sdp: pc.localDescription.sdp}));
        }""")
        await pupil.page.get_by_role("status").filter(
            has_text="seuls l'animateur et les présentateurs peuvent envoyer").wait_for(
            timeout=TIMEOUT_MS)

        # Someone who arrives during the lecture publishes sound only, without error.
        late = await room.join("Inès", LANDSCAPE_TABLET)
        await late.page.locator("#lecture-label").wait_for(timeout=TIMEOUT_MS)
        await late.page.wait_for_function(
            "() => window.visio.pcs.publish && window.visio.pcs.publish.getTransceivers()"
            ".some((t) => t.currentDirection === 'sendonly')", timeout=TIMEOUT_MS)
        assert not await late.page.evaluate(f"({CAMERA_SENT_JS})()")
        assert await late.page.get_by_role("button", name="Caméra", exact=True).is_disabled(), (
            "the late joiner's camera button is usable")
        await late.assert_no_error_status()
        await expect_class(tile_of(host, late), "withheld")

        grant = host.page.get_by_role("button", name="Autoriser Léo à présenter")
        await grant.click()
        await pupil.page.get_by_role("status").filter(
            has_text="vous autorise à présenter").wait_for(timeout=TIMEOUT_MS)
        await pupil.page.wait_for_function(CAMERA_SENT_JS, timeout=TIMEOUT_MS)
        assert await camera.is_enabled()
        await expect_class(tile_of(host, pupil), "withheld", present=False)
        await host.wait_for_video_of(pupil)
        # The new camera source is offered, answered and forwarded: up to 15 s.
        for _ in range(15):
            if await bytes_growth(host, pupil_id, 1.0) > 0:
                break
        else:
            raise AssertionError("the presenter's video does not arrive")
        row = host.page.locator(".person", has_text="Léo")
        await row.get_by_text("Présentateur", exact=True).first.wait_for()
        await host.page.get_by_role("button",
                                    name="Retirer à Léo le droit de présenter").wait_for()
        await host.page.screenshot(path=str(artifacts / "lecture-host-1024.png"))

        await host.page.get_by_role("button", name="Quitter le mode conférence").click()
        await pupil.page.get_by_role("status").filter(
            has_text="a désactivé le mode conférence").wait_for(timeout=TIMEOUT_MS)
        assert await camera.is_enabled()
        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "lecture") from exc


async def test_server_hides_a_publisher_that_ignores_lecture_mode(
        browser: Any, visio_server: ServerProcess, artifacts: Path) -> None:
    """The pupil's page never hears of lecture mode (its socket is filtered), so it
    keeps sending its camera: the server alone must stop that video reaching others."""
    room = Room(browser, visio_server.base_url, artifacts)
    try:
        host = await room.join("Mme Martin", LANDSCAPE_TABLET)
        context = await browser.new_context(viewport=PORTRAIT_810, locale="fr-FR")
        page = await context.new_page()

        def deaf_to_lecture(ws: Any) -> None:
            server = ws.connect_to_server()
            ws.on_message(server.send)

            def to_page(message: str | bytes) -> None:
                if isinstance(message, str) and json.loads(message).get("type") == "lecture":
                    return
                ws.send(message)
            server.on_message(to_page)

        await page.route_web_socket("**/ws", deaf_to_lecture)
        pupil = Participant("Léo", page)
        room.people.append(pupil)
        await page.goto(f"{room.base_url}/?room={room.name}")
        await page.get_by_label("Votre nom").fill(pupil.name)
        await page.get_by_role("button", name="Rejoindre").click()
        await host.wait_for_video_of(pupil)
        pupil_id = await participant_id(host, pupil)
        assert await bytes_growth(host, pupil_id) > 0

        await host.page.locator("#open-people").click()
        await host.page.get_by_role("button", name="Mode conférence").click()
        await host.page.locator("#lecture-label").wait_for(timeout=TIMEOUT_MS)
        await asyncio.sleep(SETTLE_S)
        assert await pupil.page.evaluate(f"({CAMERA_SENT_JS})()"), "the pupil should not know"
        assert await bytes_growth(host, pupil_id) == 0, "the server let a non-presenter through"

        await host.page.get_by_role("button", name="Autoriser Léo à présenter").click()
        for _ in range(15):
            if await bytes_growth(host, pupil_id, 1.0) > 0:
                break
        else:
            raise AssertionError("the presenter's video does not come back")
        errors = console_errors(room.people)
        assert not errors, errors
    except Exception as exc:
        raise await room.report_failure(exc, "lecture-server") from exc
