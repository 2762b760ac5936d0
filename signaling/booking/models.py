"""The booking domain as tables: organisations, their admins, rooms and bookings.

Times are stored in UTC (``UtcDateTime``) and shown in the organisation's time
zone. The schema itself is created by the Alembic migrations in
``migrations/versions``; these classes must match them (a test checks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DEFAULT_TIME_ZONE = "Europe/Paris"


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime in, an aware UTC datetime out; naive UTC where the database has no zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TIME_ZONE)
    # SHA-256 of the API key: keys are 256-bit random, so a fast hash is enough.
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    rooms: Mapped[list[Room]] = relationship(back_populates="organisation",
                                             order_by="Room.name")


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    organisation: Mapped[Organisation] = relationship()


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (
        UniqueConstraint("organisation_id", "name", name="rooms_name_unique"),
        CheckConstraint("max_participants >= 1", name="rooms_capacity_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    max_participants: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)

    organisation: Mapped[Organisation] = relationship(back_populates="rooms")


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="bookings_end_after_start"),
        CheckConstraint("expected_participants >= 1", name="bookings_participants_positive"),
        Index("bookings_room_start", "room_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expected_participants: Mapped[int] = mapped_column(Integer)
    # The signaling room of this meeting (A-Z a-z 0-9 _ - as the protocol requires).
    meeting_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(254))  # admin e-mail, or "api"
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    room: Mapped[Room] = relationship()
