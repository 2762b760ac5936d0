"""Organisations, admins, rooms and bookings; no overlapping live bookings of one room.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from signaling.booking.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Two live (not cancelled) bookings of one room may not overlap; [start, end) intervals.
_SQLITE_OVERLAP = """
SELECT RAISE(ABORT, 'booking_overlap') WHERE EXISTS (
    SELECT 1 FROM bookings AS other
    WHERE other.room_id = NEW.room_id AND other.cancelled_at IS NULL AND other.id != NEW.id
      AND other.starts_at < NEW.ends_at AND NEW.starts_at < other.ends_at);
"""


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("api_key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("organisation_id", sa.Integer, sa.ForeignKey("organisations.id"),
                  nullable=False, index=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "rooms",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("organisation_id", sa.Integer, sa.ForeignKey("organisations.id"),
                  nullable=False, index=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("max_participants", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("organisation_id", "name", name="rooms_name_unique"),
        sa.CheckConstraint("max_participants >= 1", name="rooms_capacity_positive"),
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id"), nullable=False, index=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("starts_at", UtcDateTime, nullable=False),
        sa.Column("ends_at", UtcDateTime, nullable=False),
        sa.Column("expected_participants", sa.Integer, nullable=False),
        sa.Column("meeting_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("cancelled_at", UtcDateTime, nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name="bookings_end_after_start"),
        sa.CheckConstraint("expected_participants >= 1", name="bookings_participants_positive"),
    )
    op.create_index("bookings_room_start", "bookings", ["room_id", "starts_at"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # btree_gist gives GiST the "=" on room_id; it is a trusted extension (PostgreSQL 13+).
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE bookings ADD CONSTRAINT booking_overlap EXCLUDE USING gist "
            "(room_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) "
            "WHERE (cancelled_at IS NULL)")
    elif dialect == "sqlite":
        op.execute("CREATE TRIGGER booking_overlap_insert BEFORE INSERT ON bookings "
                   f"WHEN NEW.cancelled_at IS NULL BEGIN {_SQLITE_OVERLAP} END")
        op.execute("CREATE TRIGGER booking_overlap_update BEFORE UPDATE OF room_id, starts_at, "
                   "ends_at, cancelled_at ON bookings "
                   f"WHEN NEW.cancelled_at IS NULL BEGIN {_SQLITE_OVERLAP} END")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS booking_overlap_update")
        op.execute("DROP TRIGGER IF EXISTS booking_overlap_insert")
    op.drop_index("bookings_room_start", table_name="bookings")
    op.drop_table("bookings")
    op.drop_table("rooms")
    op.drop_table("admins")
    op.drop_table("organisations")
