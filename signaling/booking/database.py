"""The booking database: SQLite in the data directory by default, PostgreSQL in production.

Writes that must see a consistent room (``Database.write``) run in a
transaction that excludes every other writer on SQLite (``BEGIN IMMEDIATE``);
on PostgreSQL the exclusion constraint ``booking_overlap`` decides. Either way
the schema itself refuses an overlapping booking (a trigger on SQLite).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE = "visio.sqlite3"
SQLITE_BUSY_TIMEOUT_S = 30.0
_WRITE_OPTION = "visio_exclusive_write"


def database_url(data_dir: Path, url: str | None) -> str:
    """The configured URL, or a SQLite file in the data directory (created if missing)."""
    if url:
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+asyncpg")
        elif parsed.drivername == "sqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        return parsed.render_as_string(hide_password=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / SQLITE_FILE).resolve()}"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


class Database:
    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, **engine_options,
                                                       **_dialect_options(url))
        if self.engine.dialect.name == "sqlite":
            _take_over_sqlite_transactions(self.engine)
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self.engine.execution_options(**{_WRITE_OPTION: True}),
                                          expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def upgrade(self) -> None:
        """Apply every migration not yet applied (``alembic upgrade head``)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(
                lambda sync: command.upgrade(alembic_config(sync), "head"))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction committed on success; no other writer runs meanwhile on SQLite."""
        async with self._writer() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def _dialect_options(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_size": 10, "max_overflow": 10, "pool_timeout": 60}


def _take_over_sqlite_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, emit BEGIN: IMMEDIATE for writes, WAL on."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        exclusive = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if exclusive else "BEGIN")
