"""Whether a ``join`` may proceed: the signaling server's only question to the booking side."""

from __future__ import annotations

from dataclasses import dataclass

from signaling.booking.database import Database
from signaling.booking.models import Booking, Room, utc_now
from signaling.booking.tokens import OPENS_BEFORE_START, JoinTokens, Role, TokenRefused


class JoinRefused(Exception):
    """``code`` is the signaling error code the client receives."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Admission:
    role: Role
    max_participants: int | None  # None: the server-wide limit only
    booking_id: int | None = None


class JoinGate:
    """Checks join tokens against the signing key and the booking as it is now.

    In development mode a join without a token is admitted as a participant (the
    README's try-it-now flow); a token that is given is always checked.
    """

    def __init__(self, db: Database, tokens: JoinTokens, development: bool) -> None:
        self._db = db
        self._tokens = tokens
        self.development = development

    async def admit(self, room: str, token: str | None) -> Admission:
        if token is None:
            if self.development:
                return Admission(role="participant", max_participants=None)
            raise JoinRefused("token_required", "this server admits only through a meeting "
                                                "link: the join needs its token")
        try:
            claims = self._tokens.verify(token)
        except TokenRefused as exc:
            raise JoinRefused(exc.code, str(exc)) from None
        if claims.room != room:
            raise JoinRefused("wrong_room", "this meeting link is for another room")
        async with self._db.read() as session:
            booking = await session.get(Booking, claims.booking_id)
            capacity = None
            if booking is not None:
                booked_room = await session.get(Room, booking.room_id)
                capacity = booked_room.max_participants if booked_room else None
        if booking is None or booking.meeting_id != claims.room:
            raise JoinRefused("token_invalid", "the meeting link names no booking")
        if booking.cancelled_at is not None:
            raise JoinRefused("booking_cancelled", "this meeting was cancelled")
        # The booking may have been moved since the link was made: its times now decide too.
        now = utc_now()
        if now >= booking.ends_at:
            raise JoinRefused("token_expired", "this meeting link has expired: the booking "
                                               "is over")
        if now < booking.starts_at - OPENS_BEFORE_START:
            raise JoinRefused("token_not_yet_valid", "this meeting opens 15 minutes before "
                                                     "its start")
        return Admission(role=claims.role, max_participants=capacity, booking_id=booking.id)
