"""Booking pages over HTTP: login, CSRF, cookies, language switch, edit and cancel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.booking.conftest import create_org, start_booking_server
from tests.conftest import stop_server


@pytest.fixture
def served(tmp_path: Path) -> Any:
    org = create_org(tmp_path, None, "Salle B:30")
    server = start_booking_server(tmp_path)
    try:
        yield server, org
    finally:
        stop_server(server)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def log_in(session: aiohttp.ClientSession, base: str, org: Any) -> None:
    async with session.get(f"{base}/booking/login") as response:
        csrf = csrf_of(await response.text())
    async with session.post(f"{base}/booking/login", data={
            "csrf": csrf, "email": org.email, "password": org.password}) as response:
        assert response.status == 200
        assert "/booking/rooms/" in str(response.url)


async def test_login_csrf_cookies_and_language(served: Any) -> None:
    server, org = served
    base = server.base_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base}/booking/rooms/1", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"].startswith("/booking/login?next=")
        async with session.get(f"{base}/booking/login") as response:
            page = await response.text()
            assert '<html lang="fr">' in page and "Se connecter" in page
            csrf_cookie = response.cookies["visio_csrf"]
            assert csrf_cookie["httponly"] and csrf_cookie["samesite"] == "Strict"
        # Without the CSRF field, or from another origin: refused.
        async with session.post(f"{base}/booking/login", data={
                "email": org.email, "password": org.password}) as response:
            assert response.status == 403
        async with session.post(f"{base}/booking/login", headers={"Origin": "https://evil.example"},
                                data={"csrf": csrf_of(page), "email": org.email,
                                      "password": org.password}) as response:
            assert response.status == 403
        async with session.post(f"{base}/booking/login", data={
                "csrf": csrf_of(page), "email": org.email, "password": "wrong"}) as response:
            assert response.status == 401
            assert "incorrect" in await response.text()
        async with session.post(f"{base}/booking/login", allow_redirects=False, data={
                "csrf": csrf_of(page), "email": org.email, "password": org.password}) as response:
            assert response.status == 303
            cookie = response.cookies["visio_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            assert cookie["path"] == "/booking"
        async with session.get(f"{base}/booking/rooms?lang=en") as response:
            page = await response.text()
            assert '<html lang="en">' in page and "Add a room" in page
        async with session.get(f"{base}/booking/rooms") as response:
            assert "Add a room" in await response.text()  # the choice is remembered


async def test_cookies_are_secure_behind_https(served: Any) -> None:
    server, _ = served
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.base_url}/booking/login",
            headers={"X-Forwarded-Proto": "https"}) as response:
        assert response.cookies["visio_csrf"]["secure"]


async def test_edit_then_cancel_with_confirmation(served: Any) -> None:
    server, org = served
    base = server.base_url
    room = org.rooms["Salle B"]
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base, org)
        async with session.get(f"{base}/booking/rooms/{room}/new?start={day}T14:00") as response:
            csrf = csrf_of(await response.text())
        form = {"csrf": csrf, "title": "Atelier", "date": day, "start": "14:00",
                "end": "13:00", "expected_participants": "8"}
        async with session.post(f"{base}/booking/rooms/{room}/new", data=form) as response:
            assert response.status == 422
            assert 'data-field="end">La fin doit être après le début.' in await response.text()
        form["end"] = "15:00"
        async with session.post(f"{base}/booking/rooms/{room}/new", data=form) as response:
            assert response.status == 200
            booking_url = str(response.url).split("?")[0]
            assert "Réservation enregistrée" in await response.text()
        form.update(title="Atelier théâtre", start="15:00", end="16:30")
        async with session.post(f"{booking_url}/edit", data=form) as response:
            page = await response.text()
            assert "Atelier théâtre" in page and "15:00 \u2013 16:30" in page
        async with session.get(f"{booking_url}/cancel") as response:
            page = await response.text()
            assert "Annuler cette réservation ?" in page
        async with session.post(f"{booking_url}/cancel", data={"csrf": csrf}) as response:
            page = await response.text()
            assert "Annulée" in page and "participant-link" not in page
        async with session.get(f"{booking_url}/booking.ics") as response:
            assert "STATUS:CANCELLED" in await response.text()
