"""Security headers everywhere, and pages that satisfy their Content-Security-Policy."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signaling.security import CONTENT_SECURITY_POLICY
from tests.booking.conftest import Organisation, api, create_org, start_booking_server
from tests.conftest import ServerProcess, stop_server
from tests.ops.browser_checks import WatchedPage


def headers_of(url: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(response.headers)
    except urllib.error.HTTPError as error:
        return dict(error.headers)


@pytest.fixture
def booked(tmp_path: Path) -> Iterator[tuple[ServerProcess, Organisation]]:
    """A production server with one booking tomorrow in "Salle B"."""
    org = create_org(tmp_path, None, "Salle B:30")
    server = start_booking_server(tmp_path)
    try:
        start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0,
                                                                 microsecond=0)
        status, body = api(server, "POST", "/api/v1/bookings", org.api_key, {
            "room_id": org.rooms["Salle B"], "title": "Conseil", "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(), "expected_participants": 12})
        assert status == 201, body
        yield server, org
    finally:
        stop_server(server)


@pytest.mark.parametrize("path", ["/", "/app.js", "/booking/login", "/api/v1/rooms",
                                  "/metrics", "/no-such-page"])
def test_every_response_carries_the_headers(visio_server: ServerProcess, path: str) -> None:
    headers = headers_of(visio_server.base_url + path)
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in headers  # plain HTTP


def test_no_inline_script_or_style_in_pages() -> None:
    root = Path(__file__).resolve().parents[2]
    pages = [root / "web-client" / "index.html",
             *sorted((root / "signaling" / "booking" / "templates").glob("*.html"))]
    for page in pages:
        text = page.read_text()
        assert "<style" not in text, page
        assert " style=" not in text, page
        assert " onclick=" not in text and " onload=" not in text, page
        for tag in text.split("<script")[1:]:
            assert " src=" in tag.split(">", 1)[0], f"inline script in {page}"


@pytest.mark.browser
async def test_join_page_has_no_csp_violation(browser: Any, visio_server: ServerProcess) -> None:
    room = f"csp-{secrets.token_hex(3)}"
    pages = [await WatchedPage.open(browser) for _ in range(2)]
    try:
        for page, name in zip(pages, ("Mme Martin", "Léo"), strict=True):
            await page.join(visio_server.base_url, room, name)
        for page in pages:
            await page.wait_for_remote_video()
        for page in pages:
            assert await page.violations() == [], "\n".join(page.console)
    finally:
        for page in pages:
            await page.close()


@pytest.mark.browser
async def test_booking_pages_have_no_csp_violation(
        browser: Any, booked: tuple[ServerProcess, Organisation]) -> None:
    server, org = booked
    page = await WatchedPage.open(browser, viewport={"width": 1024, "height": 768})
    try:
        await page.page.goto(server.base_url + "/booking/login")
        assert await page.violations() == [], "login page"
        await page.page.get_by_label("Adresse e-mail").fill(org.email)
        await page.page.get_by_label("Mot de passe").fill(org.password)
        await page.page.get_by_role("button", name="Se connecter").click()
        await page.page.get_by_role("heading", name="Salle B").wait_for()
        assert await page.violations() == [], "rooms page"
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        await page.page.goto(f"{server.base_url}/booking/rooms/{org.rooms['Salle B']}"
                             f"?week={tomorrow}")
        block = page.page.locator(".booking-block", has_text="Conseil")
        await block.wait_for()
        # The calendar geometry, set by booking.js instead of inline styles, is applied.
        box = await block.bounding_box()
        assert box is not None and box["height"] > 20, box
        assert await page.violations() == [], "week page"
        await block.click()
        await page.page.get_by_role("heading", name="Conseil").wait_for()
        assert await page.violations() == [], "booking page"
    finally:
        await page.close()
