"""Alembic environment: runs on the connection that ``Database.upgrade`` hands over."""

from __future__ import annotations

from alembic import context

from signaling.booking.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through signaling.booking.database.Database.upgrade "
                       "(visio serve does it at start)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
