"""The REST API of a real ``visio serve`` process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.booking.conftest import Organisation, api, create_org, start_booking_server
from tests.conftest import stop_server


def slot(days: int = 1, hour: int = 9, minutes: int = 60) -> tuple[str, str]:
    day = datetime.now(UTC).date() + timedelta(days=days)
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return start.isoformat(), (start + timedelta(minutes=minutes)).isoformat()


def new_booking(org: Organisation, start: str, end: str, people: int = 10,
                title: str = "Conseil de classe", room: str = "Salle B") -> dict[str, Any]:
    return {"room_id": org.rooms[room], "title": title, "start": start, "end": end,
            "expected_participants": people}


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Any:
    org = create_org(tmp_path, database_url, "Salle B:30", "Bureau:4")
    server = start_booking_server(tmp_path, database_url)
    try:
        yield server, org
    finally:
        stop_server(server)


async def test_100_concurrent_requests_for_one_slot_store_exactly_one(served: Any) -> None:
    server, org = served
    start = datetime.fromisoformat(slot(hour=14)[0])

    async def post(session: aiohttp.ClientSession, i: int) -> tuple[int, Any]:
        begin = start + timedelta(minutes=i % 45)  # overlapping, not identical, slots
        body = new_booking(org, begin.isoformat(), (begin + timedelta(hours=1)).isoformat(),
                           title=f"Réunion {i}")
        async with session.post(f"{server.base_url}/api/v1/bookings", json=body,
                                headers={"Authorization": f"Bearer {org.api_key}"}) as response:
            return response.status, await response.json()

    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(post(session, i) for i in range(100)))
    statuses = Counter(status for status, _ in results)
    print(f"\n100 concurrent bookings of one room: {dict(statuses)}")
    assert statuses == {201: 1, 409: 99}
    refusals = [body["error"] for status, body in results if status == 409]
    assert {(e["code"], e["field"]) for e in refusals} == {("conflict", "start")}
    status, listing = api(server, "GET", "/api/v1/bookings", org.api_key)
    assert status == 200 and len(listing["bookings"]) == 1


def test_create_list_links_and_cancel(served: Any) -> None:
    server, org = served
    start, end = slot(hour=9)
    status, created = api(server, "POST", "/api/v1/bookings", org.api_key,
                          {**new_booking(org, start, end), "created_by": "pronote"})
    assert status == 201, created
    assert created["status"] == "booked" and created["created_by"] == "pronote"
    assert created["time_zone"] == "Europe/Paris" and created["start"].endswith("Z")
    assert set(created["links"]) == {"host", "participant", "valid_from", "valid_until"}
    assert created["links"]["participant"].startswith(server.base_url + "/?room=m-")
    status, fetched = api(server, "GET", f"/api/v1/bookings/{created['id']}/links", org.api_key)
    assert status == 200 and fetched["participant"].split("token=")[0] == (
        created["links"]["participant"].split("token=")[0])
    status, cancelled = api(server, "DELETE", f"/api/v1/bookings/{created['id']}", org.api_key)
    assert status == 200 and cancelled["status"] == "cancelled"
    status, listing = api(server, "GET", "/api/v1/bookings", org.api_key)
    assert listing["bookings"] == []
    status, listing = api(server, "GET", "/api/v1/bookings?include_cancelled=true", org.api_key)
    assert [b["id"] for b in listing["bookings"]] == [created["id"]]
    status, again = api(server, "POST", "/api/v1/bookings", org.api_key,
                        new_booking(org, start, end))
    assert status == 201, again  # the cancelled booking no longer holds the slot
    status, rooms = api(server, "GET", "/api/v1/rooms", org.api_key)
    assert status == 200 and {r["name"]: r["max_participants"] for r in rooms["rooms"]} == {
        "Salle B": 30, "Bureau": 4}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_input_gets_a_4xx_naming_the_field(served: Any) -> None:
    server, org = served
    start, end = slot(hour=10)
    api(server, "POST", "/api/v1/bookings", org.api_key, new_booking(org, start, end))
    past_start, past_end = slot(days=-1)
    cases: list[tuple[Any, int, str, str]] = [
        ({**new_booking(org, start, end)}, 409, "start", "conflict"),
        (new_booking(org, end, start), 422, "end", "end_before_start"),
        (new_booking(org, past_start, past_end), 422, "start", "in_the_past"),
        (new_booking(org, *slot(hour=15), people=5, room="Bureau"), 422,
         "expected_participants", "over_capacity"),
        ({k: v for k, v in new_booking(org, start, end).items() if k != "title"}, 422,
         "title", "required"),
        ({**new_booking(org, start, end), "start": "2030-01-01T09:00"}, 422, "start", "invalid"),
        ({**new_booking(org, start, end), "start": "tomorrow"}, 422, "start", "invalid"),
        ({**new_booking(org, start, end), "room_id": 999}, 404, "room_id", "not_found"),
        ({**new_booking(org, start, end), "expected_participants": "5"}, 422,
         "expected_participants", "required"),
        ([1, 2], 400, "body", "bad_json"),
    ]
    for body, status, field, code in cases:
        got_status, got = api(server, "POST", "/api/v1/bookings", org.api_key, body)
        assert (got_status, got["error"]["field"], got["error"]["code"]) == (status, field, code)
        assert got["error"]["message"]
    for key in (None, "vk_not-a-key", "nonsense"):
        got_status, got = api(server, "GET", "/api/v1/bookings", key)
        assert (got_status, got["error"]["field"]) == (401, "Authorization")
    got_status, got = api(server, "GET", "/api/v1/bookings/12345", org.api_key)
    assert (got_status, got["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_organisation_sees_only_its_own_bookings(tmp_path: Path, database_url: str) -> None:
    ours = create_org(tmp_path, database_url, "Salle B:30")
    theirs = create_org(tmp_path, database_url, "Salle B:30", email="mairie@ville.fr")
    server = start_booking_server(tmp_path, database_url)
    try:
        status, created = api(server, "POST", "/api/v1/bookings", ours.api_key,
                              new_booking(ours, *slot()))
        assert status == 201
        assert api(server, "GET", f"/api/v1/bookings/{created['id']}", theirs.api_key)[0] == 404
        assert api(server, "DELETE", f"/api/v1/bookings/{created['id']}",
                   theirs.api_key)[0] == 404
        status, refused = api(server, "POST", "/api/v1/bookings", theirs.api_key,
                              new_booking(ours, *slot(hour=11)))
        assert (status, refused["error"]["field"]) == (404, "room_id")
    finally:
        stop_server(server)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openapi_description_is_served(served: Any) -> None:
    server, _ = served
    status, document = api(server, "GET", "/api/v1/openapi.json", None)
    assert status == 200
    assert document["openapi"].startswith("3.")
    assert {"/rooms", "/bookings", "/bookings/{booking_id}",
            "/bookings/{booking_id}/links"} <= set(document["paths"])
    assert "409" in document["paths"]["/bookings"]["post"]["responses"]


def test_bookings_survive_a_restart_on_the_same_sqlite_file(tmp_path: Path) -> None:
    org = create_org(tmp_path, None, "Salle B:30")  # the default: data_dir/visio.sqlite3
    server = start_booking_server(tmp_path)
    made = []
    try:
        for hour in (8, 10, 13):
            status, created = api(server, "POST", "/api/v1/bookings", org.api_key,
                                  new_booking(org, *slot(hour=hour), title=f"Cours {hour}h"))
            assert status == 201, created
            made.append(created)
        api(server, "DELETE", f"/api/v1/bookings/{made[1]['id']}", org.api_key)
    finally:
        stop_server(server)
    assert (tmp_path / "visio.sqlite3").exists()
    server = start_booking_server(tmp_path)
    try:
        status, listing = api(server, "GET", "/api/v1/bookings?include_cancelled=1", org.api_key)
        assert status == 200
        assert [(b["title"], b["status"]) for b in listing["bookings"]] == [
            ("Cours 8h", "booked"), ("Cours 10h", "cancelled"), ("Cours 13h", "booked")]
        assert [b["start"] for b in listing["bookings"]] == [b["start"] for b in made]
        status, again = api(server, "POST", "/api/v1/bookings", org.api_key,
                            new_booking(org, *slot(hour=8)))
        assert (status, again["error"]["code"]) == (409, "conflict")
    finally:
        stop_server(server)
