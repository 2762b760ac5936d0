"""Wires the booking side into the aiohttp application: migrations at start, routes, gate."""

from __future__ import annotations

import logging

from aiohttp import web

from signaling.booking import api, pages
from signaling.booking.context import BOOKING_KEY, BookingContext
from signaling.booking.database import Database, database_url
from signaling.booking.gate import JoinGate
from signaling.booking.secret_key import resolve_secret_key
from signaling.booking.tokens import JoinTokens
from signaling.settings import Settings

logger = logging.getLogger(__name__)


def install_booking(app: web.Application, settings: Settings) -> BookingContext:
    secret_key = resolve_secret_key(settings.secret_key, settings.data_dir, settings.development)
    db = Database(database_url(settings.data_dir, settings.database_url))
    tokens = JoinTokens(secret_key)
    context = BookingContext(db=db, tokens=tokens,
                             gate=JoinGate(db, tokens, settings.development),
                             secret_key=secret_key, development=settings.development,
                             public_url=settings.public_url)
    app[BOOKING_KEY] = context
    app.middlewares.append(api.json_errors)
    api.add_routes(app)
    pages.add_routes(app)

    async def migrate(app: web.Application) -> None:
        await db.upgrade()
        logger.info("booking database %s is at the latest schema",
                    db.engine.url.render_as_string(hide_password=True))
        if settings.development:
            logger.warning("DEVELOPMENT MODE: joins without a booking link are accepted. "
                           "Serve with --mode production (and VISIO_SECRET_KEY) before "
                           "anyone else can reach this server.")

    async def close(app: web.Application) -> None:
        await db.close()

    app.on_startup.append(migrate)
    app.on_cleanup.append(close)
    return context
