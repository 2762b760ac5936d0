"""What the booking side keeps in the aiohttp application: database, token signer, gate."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from signaling.booking.database import Database
from signaling.booking.gate import JoinGate
from signaling.booking.tokens import JoinTokens


@dataclass
class BookingContext:
    db: Database
    tokens: JoinTokens
    gate: JoinGate
    secret_key: str
    development: bool
    public_url: str | None

    def base_url(self, request: web.Request) -> str:
        """Where meeting links point: the configured public URL, else this request's origin."""
        if self.public_url:
            return self.public_url
        return f"{request.scheme}://{request.host}"


BOOKING_KEY = web.AppKey("booking", BookingContext)
