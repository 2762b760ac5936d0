"""Booking a room: validation, the no-overlap rule, edits and cancellation.

Every check that needs the room's other bookings runs inside one
``Database.write`` transaction, and the schema refuses an overlap anyway
(exclusion constraint / trigger ``booking_overlap``), so two concurrent
requests for one slot can never both succeed: the loser gets ``conflict``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from signaling.booking.database import Database
from signaling.booking.models import Booking, Room, utc_now

MAX_TITLE_CHARS = 200
MAX_DURATION = timedelta(hours=12)
# A booking made a few minutes late ("the meeting starts now") is not "in the past".
PAST_GRACE = timedelta(minutes=10)
_WITH_ROOM = selectinload(Booking.room).selectinload(Room.organisation)


@dataclass(frozen=True)
class FieldError:
    field: str  # title, start, end, expected_participants, room_id
    code: str  # required, too_long, end_before_start, too_long_meeting, in_the_past,
    #            over_capacity, conflict, not_found, invalid, finished
    message: str
    # For a conflict: the booking in the way (title, start, end), when known.
    other: tuple[str, datetime, datetime] | None = None


class BookingError(Exception):
    """Refused booking input; one entry per offending field."""

    def __init__(self, *errors: FieldError) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = list(errors)

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors}


class BookingNotFound(LookupError):
    pass


@dataclass(frozen=True)
class BookingRequest:
    room_id: int
    title: str
    starts_at: datetime  # aware
    ends_at: datetime  # aware
    expected_participants: int


def new_meeting_id() -> str:
    return "m-" + secrets.token_urlsafe(12)


async def create_booking(db: Database, organisation_id: int, request: BookingRequest,
                         created_by: str, now: datetime | None = None) -> Booking:
    now = now or utc_now()
    async with db.write() as session:
        room = await _room(session, organisation_id, request.room_id)
        title = await _validate(session, request, room, now, exclude_id=None)
        booking = Booking(room_id=room.id, title=title, starts_at=request.starts_at,
                          ends_at=request.ends_at,
                          expected_participants=request.expected_participants,
                          meeting_id=new_meeting_id(), created_by=created_by,
                          created_at=now, updated_at=now)
        session.add(booking)
        await _flush(session)
        booking.room = room
        return booking


async def update_booking(db: Database, organisation_id: int, booking_id: int,
                         request: BookingRequest, now: datetime | None = None) -> Booking:
    now = now or utc_now()
    async with db.write() as session:
        booking = await _booking(session, organisation_id, booking_id)
        if booking.cancelled_at is not None or booking.ends_at <= now:
            raise BookingError(FieldError("start", "finished",
                                          "a cancelled or finished booking cannot be changed"))
        room = await _room(session, organisation_id, request.room_id)
        # An ongoing meeting keeps its start: only what changed is checked against the clock.
        check_start = request.starts_at != booking.starts_at
        title = await _validate(session, request, room, now, exclude_id=booking.id,
                                check_start=check_start)
        booking.room_id = room.id
        booking.title = title
        booking.starts_at = request.starts_at
        booking.ends_at = request.ends_at
        booking.expected_participants = request.expected_participants
        booking.updated_at = now
        await _flush(session)
        booking.room = room
        return booking


async def cancel_booking(db: Database, organisation_id: int, booking_id: int,
                         now: datetime | None = None) -> Booking:
    """Marks the booking cancelled (it is kept); cancelling twice is harmless."""
    async with db.write() as session:
        booking = await _booking(session, organisation_id, booking_id)
        if booking.cancelled_at is None:
            booking.cancelled_at = now or utc_now()
        return booking


async def get_booking(db: Database, organisation_id: int, booking_id: int) -> Booking:
    async with db.read() as session:
        return await _booking(session, organisation_id, booking_id)


async def find_bookings(db: Database, organisation_id: int, *, room_id: int | None = None,
                        start: datetime | None = None, end: datetime | None = None,
                        include_cancelled: bool = False, limit: int = 500) -> list[Booking]:
    """Bookings overlapping [start, end), by start time."""
    query = (select(Booking).options(_WITH_ROOM).join(Room)
             .where(Room.organisation_id == organisation_id))
    if room_id is not None:
        query = query.where(Booking.room_id == room_id)
    if start is not None:
        query = query.where(Booking.ends_at > start)
    if end is not None:
        query = query.where(Booking.starts_at < end)
    if not include_cancelled:
        query = query.where(Booking.cancelled_at.is_(None))
    async with db.read() as session:
        rows = await session.scalars(query.order_by(Booking.starts_at, Booking.id).limit(limit))
        return list(rows)


async def _validate(session: AsyncSession, request: BookingRequest, room: Room, now: datetime,
                    exclude_id: int | None, check_start: bool = True) -> str:
    """The cleaned title, or every problem at once (conflict included) as a BookingError."""
    errors: list[FieldError] = []
    title = " ".join(request.title.split())
    if not title:
        errors.append(FieldError("title", "required", "a title is required"))
    elif len(title) > MAX_TITLE_CHARS:
        errors.append(FieldError("title", "too_long",
                                 f"the title is longer than {MAX_TITLE_CHARS} characters"))
    if request.ends_at <= request.starts_at:
        errors.append(FieldError("end", "end_before_start", "the end must be after the start"))
    elif request.ends_at - request.starts_at > MAX_DURATION:
        errors.append(FieldError("end", "too_long_meeting",
                                 "a booking lasts at most 12 hours"))
    if check_start and request.starts_at < now - PAST_GRACE:
        errors.append(FieldError("start", "in_the_past", "the start is in the past"))
    elif request.ends_at > request.starts_at:
        conflict = await _overlap(session, request, exclude_id)
        if conflict is not None:
            errors.append(conflict)
    if request.expected_participants < 1:
        errors.append(FieldError("expected_participants", "invalid",
                                 "at least one participant is expected"))
    elif request.expected_participants > room.max_participants:
        errors.append(FieldError(
            "expected_participants", "over_capacity",
            f"the room holds at most {room.max_participants} participants"))
    if errors:
        raise BookingError(*errors)
    return title


async def _overlap(session: AsyncSession, request: BookingRequest,
                   exclude_id: int | None) -> FieldError | None:
    query = select(Booking).where(Booking.room_id == request.room_id,
                                  Booking.cancelled_at.is_(None),
                                  Booking.starts_at < request.ends_at,
                                  Booking.ends_at > request.starts_at)
    if exclude_id is not None:
        query = query.where(Booking.id != exclude_id)
    other = await session.scalar(query.limit(1))
    return None if other is None else _conflict(other)


def _conflict(other: Booking | None) -> FieldError:
    if other is None:
        return FieldError("start", "conflict", "the room is already booked at that time")
    return FieldError("start", "conflict",
                      f"the room is already booked at that time ({other.title!r}, "
                      f"{other.starts_at:%Y-%m-%d %H:%M} to {other.ends_at:%H:%M} UTC)",
                      other=(other.title, other.starts_at, other.ends_at))


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        if "booking_overlap" in str(exc.orig):
            raise BookingError(_conflict(None)) from None
        raise


async def _room(session: AsyncSession, organisation_id: int, room_id: int) -> Room:
    room = await session.get(Room, room_id, options=[selectinload(Room.organisation)])
    if room is None or room.organisation_id != organisation_id:
        raise BookingError(FieldError("room_id", "not_found", f"no room {room_id}"))
    return room


async def _booking(session: AsyncSession, organisation_id: int, booking_id: int) -> Booking:
    booking = await session.scalar(select(Booking).options(_WITH_ROOM).join(Room).where(
        Booking.id == booking_id, Room.organisation_id == organisation_id))
    if booking is None:
        raise BookingNotFound(f"no booking {booking_id}")
    return booking
