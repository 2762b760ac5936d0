"""Join tokens at the real WebSocket of a production-mode ``visio serve`` (no mocks).

Bookings are made through the REST API, except one in the past, which is
written with the booking code itself (the API rightly refuses past slots).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest

from signaling.booking.calendar import BookingRequest, create_booking
from signaling.booking.database import Database, database_url
from signaling.booking.tokens import JoinTokens
from tests.booking.conftest import SECRET_KEY, Organisation, api, create_org, start_booking_server
from tests.conftest import ServerProcess, stop_server

NOW = datetime.now(UTC)


def booking_body(org: Organisation, start: datetime, end: datetime,
                 room: str = "Petite salle") -> dict[str, Any]:
    return {"room_id": org.rooms[room], "title": "Réunion parents-profs",
            "start": start.isoformat(), "end": end.isoformat(), "expected_participants": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One production server with a current, a future, a past and a cancelled booking."""
    data_dir = tmp_path_factory.mktemp("auth")
    org = create_org(data_dir, None, "Petite salle:2", "Grande salle:50", "Salle C:5")
    server = start_booking_server(data_dir)
    try:
        def book(start: datetime, end: datetime, room: str = "Petite salle") -> dict[str, Any]:
            status, created = api(server, "POST", "/api/v1/bookings", org.api_key,
                                  booking_body(org, start, end, room))
            assert status == 201, created
            return dict(created)

        now = datetime.now(UTC)
        current = book(now - timedelta(minutes=5), now + timedelta(hours=1))
        other_current = book(now - timedelta(minutes=5), now + timedelta(hours=1), "Grande salle")
        future = book(now + timedelta(days=1), now + timedelta(days=1, hours=1))
        cancelled = book(now - timedelta(minutes=5), now + timedelta(hours=1), "Salle C")
        api(server, "DELETE", f"/api/v1/bookings/{cancelled['id']}", org.api_key)
        past = _book_in_the_past(data_dir, org)
        cancelled_links = JoinTokens(SECRET_KEY)  # the API refuses links of cancelled bookings
        yield {"server": server, "org": org, "current": current,
               "other_current": other_current, "future": future, "past": past,
               "cancelled_token": _token_for(data_dir, org, cancelled["id"], cancelled_links)}
    finally:
        stop_server(server)


def _book_in_the_past(data_dir: Path, org: Organisation) -> dict[str, Any]:
    import asyncio

    async def make() -> dict[str, Any]:
        db = Database(database_url(data_dir, None))
        try:
            yesterday = datetime.now(UTC) - timedelta(days=1)
            booking = await create_booking(
                db, 1, BookingRequest(org.rooms["Petite salle"], "Hier", yesterday,
                                      yesterday + timedelta(hours=1), 2),
                "test", now=yesterday - timedelta(hours=1))
            tokens = JoinTokens(SECRET_KEY)
            return {"id": booking.id, "meeting_id": booking.meeting_id,
                    "token": tokens.issue(booking, "participant")}
        finally:
            await db.close()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        loop.close()


def _token_for(data_dir: Path, org: Organisation, booking_id: int, tokens: JoinTokens) -> str:
    import asyncio

    from signaling.booking.calendar import get_booking

    async def make() -> str:
        db = Database(database_url(data_dir, None))
        try:
            return tokens.issue(await get_booking(db, 1, booking_id), "participant")
        finally:
            await db.close()

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(make())
    finally:
        loop.close()


def link_parts(link: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(link).query)
    return query["room"][0], query["token"][0]


def links_of(world: dict[str, Any], booking: dict[str, Any]) -> dict[str, str]:
    status, links = api(world["server"], "GET", f"/api/v1/bookings/{booking['id']}/links",
                        world["org"].api_key)
    assert status == 200, links
    return dict(links)


class Joiner:
    def __init__(self, server: ServerProcess, stack: AsyncExitStack) -> None:
        self._server = server
        self._stack = stack

    async def join(self, room: str, token: str | None, **extra: Any) -> dict[str, Any]:
        session = await self._stack.enter_async_context(aiohttp.ClientSession())
        ws = await self._stack.enter_async_context(
            session.ws_connect(self._server.base_url.replace("http", "ws") + "/ws"))
        message: dict[str, Any] = {"type": "join", "v": 1, "id": 1, "room": room,
                                   "name": "Mme Martin", **extra}
        if token is not None:
            message["token"] = token
        await ws.send_json(message)
        reply: dict[str, Any] = await ws.receive_json(timeout=10)
        return reply


@pytest.fixture
async def joiner(world: dict[str, Any]) -> AsyncIterator[Joiner]:
    async with AsyncExitStack() as stack:
        yield Joiner(world["server"], stack)


def assert_refused(reply: dict[str, Any], code: str) -> None:
    assert reply["type"] == "error", reply
    assert (reply["code"], reply["id"]) == (code, 1), reply
    assert reply["message"]


async def test_host_and_participant_links_join_with_their_role(world: dict[str, Any],
                                                               joiner: Joiner) -> None:
    links = links_of(world, world["other_current"])
    for role in ("host", "participant"):
        room, token = link_parts(links[role])
        reply = await joiner.join(room, token)
        assert reply["type"] == "joined", reply
        assert (reply["room"], reply["role"]) == (room, role)


async def test_a_participant_cannot_claim_the_host_role(world: dict[str, Any],
                                                        joiner: Joiner) -> None:
    room, token = link_parts(links_of(world, world["other_current"])["participant"])
    reply = await joiner.join(room, token, role="host")
    assert (reply["type"], reply["role"]) == ("joined", "participant")
    # Rewriting the role inside the token breaks its signature.
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "host"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_refused(await joiner.join(room, f"{header}.{forged_payload}.{signature}"),
                   "token_invalid")


async def test_expired_link_is_refused(world: dict[str, Any], joiner: Joiner) -> None:
    past = world["past"]
    assert_refused(await joiner.join(past["meeting_id"], past["token"]), "token_expired")


async def test_link_before_opening_is_refused(world: dict[str, Any], joiner: Joiner) -> None:
    room, token = link_parts(links_of(world, world["future"])["host"])
    reply = await joiner.join(room, token)
    assert_refused(reply, "token_not_yet_valid")
    assert "15 minutes" in reply["message"]


async def test_forged_tokens_are_refused(world: dict[str, Any], joiner: Joiner) -> None:
    room, token = link_parts(links_of(world, world["current"])["participant"])
    claims = jwt.decode(token, options={"verify_signature": False})
    other_key = jwt.encode(claims, "another-key-" + "x" * 40, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for forged in (other_key, unsigned, "not-a-jwt", token[:-4] + "AAAA", ""):
        assert_refused(await joiner.join(room, forged), "token_invalid")


async def test_link_of_another_room_is_refused(world: dict[str, Any], joiner: Joiner) -> None:
    _, token = link_parts(links_of(world, world["current"])["participant"])
    other_room, _ = link_parts(links_of(world, world["other_current"])["participant"])
    assert_refused(await joiner.join(other_room, token), "wrong_room")
    assert_refused(await joiner.join("salle-libre", token), "wrong_room")


async def test_join_without_a_token_is_refused_in_production(world: dict[str, Any],
                                                             joiner: Joiner) -> None:
    room, _ = link_parts(links_of(world, world["current"])["participant"])
    assert_refused(await joiner.join(room, None), "token_required")


async def test_cancelled_booking_link_is_refused(world: dict[str, Any], joiner: Joiner) -> None:
    token = world["cancelled_token"]
    room = jwt.decode(token, options={"verify_signature": False})["room"]
    assert_refused(await joiner.join(room, token), "booking_cancelled")


async def test_over_capacity_join_is_refused(world: dict[str, Any], joiner: Joiner) -> None:
    links = links_of(world, world["current"])  # "Petite salle" holds 2
    room, host = link_parts(links["host"])
    _, participant = link_parts(links["participant"])
    assert (await joiner.join(room, host))["type"] == "joined"
    assert (await joiner.join(room, participant))["type"] == "joined"
    assert_refused(await joiner.join(room, participant), "room_full")


async def test_development_mode_admits_without_a_token_but_checks_given_ones(
        tmp_path: Path) -> None:
    server = start_booking_server(tmp_path, mode="development")
    try:
        async with AsyncExitStack() as stack:
            joiner = Joiner(server, stack)
            # Without a token the first participant of a room is its host (protocol.md).
            reply = await joiner.join("essai", None)
            assert (reply["type"], reply["role"]) == ("joined", "host")
            reply = await joiner.join("essai", None)
            assert (reply["type"], reply["role"]) == ("joined", "participant")
            assert_refused(await joiner.join("essai", "forged.token.value"), "token_invalid")
    finally:
        stop_server(server)
