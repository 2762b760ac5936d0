"""A school secretary books a room on a tablet (headless Chromium, 1024x768)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.booking.conftest import create_org, start_booking_server
from tests.conftest import stop_server

pytestmark = pytest.mark.browser

TABLET = {"width": 1024, "height": 768}


@pytest.fixture
def served(tmp_path: Path) -> Any:
    org = create_org(tmp_path, None, "Salle B:30", "Bibliothèque:12")
    server = start_booking_server(tmp_path)
    try:
        yield server, org
    finally:
        stop_server(server)


async def test_secretary_books_a_room_and_shares_the_link(browser: Any, served: Any,
                                                          artifacts: Path,
                                                          tmp_path: Path) -> None:
    server, org = served
    context = await browser.new_context(viewport=TABLET, accept_downloads=True,
                                        locale="fr-FR")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # Log in (French by default; the English switch works before and after).
        await page.goto(server.base_url + "/booking/")
        assert "/booking/login" in page.url
        await page.get_by_role("link", name="English").click()
        await page.get_by_role("heading", name="Log in").wait_for()
        await page.get_by_role("link", name="Français").click()
        await page.get_by_label("Adresse e-mail").fill(org.email)
        await page.get_by_label("Mot de passe").fill(org.password)
        await page.get_by_role("button", name="Se connecter").click()
        await page.get_by_role("heading", name="Bibliothèque").wait_for()

        # The calendar of "Salle B", the week of the day after tomorrow; book 10:00.
        await page.get_by_role("link", name="Salle B").click()
        day = (datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=2))
        await page.goto(f"{page.url.split('?')[0]}?week={day.isoformat()}")
        await page.locator(f'a.slot[data-start="{day.isoformat()}T10:00"]').click()
        await page.get_by_role("heading", name="Nouvelle réservation").wait_for()
        assert await page.get_by_label("Début").input_value() == "10:00"
        assert await page.get_by_label("Fin").input_value() == "11:00"
        await page.get_by_label("Titre").fill("Conseil des maîtres")
        await page.get_by_label("Participants attendus").fill("12")
        await page.get_by_role("button", name="Réserver").click()
        await page.get_by_role("status").filter(has_text="Réservation enregistrée").wait_for()
        booking_url = page.url.split("?")[0]

        # Back to the calendar: the booking is there.
        await page.get_by_role("link", name="Retour au calendrier").click()
        block = page.locator(".booking-block", has_text="Conseil des maîtres")
        await block.wait_for()
        assert "10:00" in (await block.get_attribute("title") or "")
        await page.screenshot(path=str(artifacts / "booking-calendar.png"), full_page=True)

        # An overlapping booking is refused, the message next to the start field.
        assert await page.locator(f'a.slot[data-start="{day.isoformat()}T10:30"]').count() == 0
        await page.locator(f'a.slot[data-start="{day.isoformat()}T11:00"]').click()
        await page.get_by_label("Début").fill("10:30")
        await page.get_by_label("Fin").fill("11:30")
        await page.get_by_label("Titre").fill("Réunion parents")
        await page.get_by_label("Participants attendus").fill("40")
        await page.get_by_role("button", name="Réserver").click()
        conflict = page.locator('.field-error[data-field="start"]')
        await conflict.wait_for()
        assert "déjà réservée" in await conflict.inner_text()
        assert "Conseil des maîtres" in await conflict.inner_text()
        over = page.locator('.field-error[data-field="expected_participants"]')
        assert "30 personnes" in await over.inner_text()
        await page.screenshot(path=str(artifacts / "booking-conflict.png"), full_page=True)

        # The booking page: links, copy buttons, QR code, .ics.
        await page.goto(booking_url)
        await page.get_by_role("heading", name="Conseil des maîtres").wait_for()
        participant_link = await page.locator("#participant-link").input_value()
        host_link = await page.locator("#host-link").input_value()
        assert participant_link.startswith(server.base_url + "/?room=m-")
        assert participant_link != host_link
        assert await page.get_by_role("button", name="Copier").count() == 2
        assert await page.locator(".qr svg path").count() >= 1
        await page.screenshot(path=str(artifacts / "booking-page.png"), full_page=True)
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Ajouter à mon agenda (.ics)").click()
        download = await download_info.value
        ics_path = tmp_path / download.suggested_filename
        await download.save_as(ics_path)
        ics = ics_path.read_bytes().decode()
        assert ics.startswith("BEGIN:VCALENDAR\r\n")
        assert "SUMMARY:Conseil des maîtres" in ics
        assert f"DTSTART:{_utc(day, 10)}" in ics

        # The participant link opens the join page on the meeting's room.
        await page.locator("#participant-open").click()
        # The heading names the meeting once the page has read the link's room.
        await page.get_by_role("heading", name=re.compile("^Rejoindre la réunion")).wait_for()
        room = parse_qs(urlsplit(participant_link).query)["room"][0]
        await page.wait_for_function("() => document.querySelector('#room').value !== ''")
        assert await page.locator("#room").input_value() == room
        assert await page.locator("#room").get_attribute("readonly") is not None
        await page.locator("#name").fill("Mme Martin")
        await page.get_by_role("button", name="Rejoindre").click()
        # Refused at the door: the pre-join screen says why (an alert beside the form).
        notice = page.get_by_role("alert")
        await notice.filter(has_text="15 minutes").wait_for(timeout=15_000)
        await page.screenshot(path=str(artifacts / "booking-join-too-early.png"))
        assert errors == []
    finally:
        await context.close()


def _utc(day: date, hour: int) -> str:
    local = datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo("Europe/Paris"))
    return local.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")
