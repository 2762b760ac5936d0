"""Booking rules on a real database of each kind (SQLite file, private PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from signaling.booking.accounts import NewOrganisation, authenticate, create_organisation
from signaling.booking.calendar import (
    BookingError,
    BookingRequest,
    cancel_booking,
    create_booking,
    find_bookings,
    get_booking,
    update_booking,
)
from signaling.booking.database import Database

HOUR = timedelta(hours=1)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def org(db: Database) -> NewOrganisation:
    return await create_organisation(db, "Mairie de Trifouillis", "accueil@mairie.fr",
                                     "correct horse battery", rooms=[("Salle du conseil", 12),
                                                                     ("Bureau", 3)])


def tomorrow_at(hour: int) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def request(org: NewOrganisation, start: datetime, end: datetime, people: int = 5,
            room: int = 0, title: str = "Conseil municipal") -> BookingRequest:
    return BookingRequest(org.room_ids[room], title, start, end, people)


async def test_a_booking_is_stored_in_utc_and_read_back_aware(db: Database,
                                                                org: NewOrganisation) -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    start = datetime(2099, 7, 1, 9, 30, tzinfo=paris)  # 07:30 UTC in summer
    booking = await create_booking(db, org.organisation_id,
                                   request(org, start, start + HOUR), "accueil@mairie.fr")
    stored = await get_booking(db, org.organisation_id, booking.id)
    assert stored.starts_at == start
    assert stored.starts_at.tzinfo is not None
    assert (stored.starts_at.hour, stored.starts_at.utcoffset()) == (7, timedelta(0))
    assert stored.room.organisation.time_zone == "Europe/Paris"


async def test_overlaps_are_refused_and_touching_slots_allowed(db: Database,
                                                               org: NewOrganisation) -> None:
    nine, ten, eleven = tomorrow_at(9), tomorrow_at(10), tomorrow_at(11)
    await create_booking(db, org.organisation_id, request(org, nine, ten), "a")
    with pytest.raises(BookingError) as refused:
        await create_booking(db, org.organisation_id,
                             request(org, nine + HOUR / 2, eleven), "b")
    assert refused.value.codes == {"conflict"}
    assert refused.value.errors[0].field == "start"
    await create_booking(db, org.organisation_id, request(org, ten, eleven), "c")  # touches
    await create_booking(db, org.organisation_id, request(org, nine, ten, room=1, people=2), "d")
    assert len(await find_bookings(db, org.organisation_id)) == 3


@pytest.mark.parametrize(("start_offset", "end_offset", "people", "field", "code"), [
    (HOUR, 0 * HOUR, 5, "end", "end_before_start"),
    (HOUR, HOUR, 5, "end", "end_before_start"),
    (HOUR, 2 * HOUR, 13, "expected_participants", "over_capacity"),
    (-3 * HOUR, -2 * HOUR, 5, "start", "in_the_past"),
    (HOUR, 20 * HOUR, 5, "end", "too_long_meeting"),
])
async def test_invalid_bookings_name_the_field(db: Database, org: NewOrganisation,
                                               start_offset: timedelta, end_offset: timedelta,
                                               people: int, field: str, code: str) -> None:
    now = datetime.now(UTC)
    with pytest.raises(BookingError) as refused:
        await create_booking(db, org.organisation_id,
                             request(org, now + start_offset, now + end_offset, people), "a")
    assert [(e.field, e.code) for e in refused.value.errors] == [(field, code)]


async def test_edit_checks_overlap_except_with_itself(db: Database, org: NewOrganisation) -> None:
    first = await create_booking(db, org.organisation_id,
                                 request(org, tomorrow_at(9), tomorrow_at(10)), "a")
    second = await create_booking(db, org.organisation_id,
                                  request(org, tomorrow_at(11), tomorrow_at(12)), "a")
    moved = await update_booking(db, org.organisation_id, second.id,
                                 request(org, tomorrow_at(10), tomorrow_at(12), title="Moved"))
    assert (moved.starts_at, moved.title) == (tomorrow_at(10), "Moved")
    with pytest.raises(BookingError) as refused:
        await update_booking(db, org.organisation_id, first.id,
                             request(org, tomorrow_at(9), tomorrow_at(11)))
    assert refused.value.codes == {"conflict"}


async def test_cancelled_bookings_are_kept_and_free_the_slot(db: Database,
                                                            org: NewOrganisation) -> None:
    booking = await create_booking(db, org.organisation_id,
                                   request(org, tomorrow_at(9), tomorrow_at(10)), "a")
    await cancel_booking(db, org.organisation_id, booking.id)
    await create_booking(db, org.organisation_id,
                         request(org, tomorrow_at(9), tomorrow_at(10)), "b")
    everything = await find_bookings(db, org.organisation_id, include_cancelled=True)
    assert [b.cancelled_at is not None for b in everything] == [True, False]
    with pytest.raises(BookingError) as refused:
        await update_booking(db, org.organisation_id, booking.id,
                             request(org, tomorrow_at(14), tomorrow_at(15)))
    assert refused.value.codes == {"finished"}


async def test_past_bookings_are_kept(db: Database, org: NewOrganisation) -> None:
    last_week = datetime.now(UTC) - timedelta(days=7)
    await create_booking(db, org.organisation_id, request(org, last_week, last_week + HOUR),
                         "a", now=last_week - HOUR)
    assert len(await find_bookings(db, org.organisation_id, start=last_week - HOUR)) == 1


async def test_the_schema_itself_refuses_an_overlap(db: Database, org: NewOrganisation) -> None:
    """Even a writer that skips the application's check cannot store an overlap."""
    await create_booking(db, org.organisation_id,
                         request(org, tomorrow_at(9), tomorrow_at(10)), "a")
    start = tomorrow_at(9) + HOUR / 4
    with pytest.raises(IntegrityError, match="booking_overlap"):
        async with db.write() as session:
            await session.execute(
                text("INSERT INTO bookings (room_id, title, starts_at, ends_at, "
                     "expected_participants, meeting_id, created_by, created_at, updated_at) "
                     "VALUES (:room, 't', :start, :end, 1, 'm-raw', 'raw', :start, :start)")
                .bindparams(room=org.room_ids[0],
                            start=_db_time(db, start), end=_db_time(db, start + HOUR)))


def _db_time(db: Database, value: datetime) -> datetime | str:
    if db.dialect == "sqlite":
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def test_100_concurrent_bookings_of_one_slot_store_exactly_one(
        db: Database, org: NewOrganisation) -> None:
    start = tomorrow_at(14)

    async def attempt(i: int) -> object:
        offset = timedelta(minutes=i % 30)  # overlapping, not identical, slots
        try:
            return await create_booking(db, org.organisation_id,
                                        request(org, start + offset, start + offset + HOUR),
                                        f"user{i}")
        except BookingError as exc:
            return exc

    results = await asyncio.gather(*(attempt(i) for i in range(100)))
    refused = [r for r in results if isinstance(r, BookingError)]
    assert len(refused) == 99
    assert all(r.codes == {"conflict"} for r in refused)
    assert len(await find_bookings(db, org.organisation_id)) == 1


async def test_admin_password_is_argon2_hashed(db: Database, org: NewOrganisation) -> None:
    admin = await authenticate(db, "Accueil@Mairie.fr ", "correct horse battery")
    assert admin is not None
    assert admin.password_hash.startswith("$argon2id$")
    assert await authenticate(db, "accueil@mairie.fr", "wrong password") is None
    assert await authenticate(db, "nobody@mairie.fr", "correct horse battery") is None
