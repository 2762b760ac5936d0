"""Alembic migrations: an empty database of each kind upgrades to head and matches the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from signaling.booking.database import Database, alembic_config
from signaling.booking.models import Base


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def test_empty_database_upgrades_to_head_and_matches_the_models(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await db.upgrade()  # idempotent: a restart applies nothing twice

        def check(connection: Connection) -> None:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() == _head()
            tables = set(inspect(connection).get_table_names())
            assert {"organisations", "admins", "rooms", "bookings", "alembic_version"} <= tables
            assert compare_metadata(context, Base.metadata) == []

        async with db.engine.connect() as connection:
            await connection.run_sync(check)
    finally:
        await db.close()


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        async with db.engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.downgrade(alembic_config(sync), "base"))
            assert "bookings" not in await connection.run_sync(
                lambda sync: inspect(sync).get_table_names())
        await db.upgrade()
    finally:
        await db.close()
