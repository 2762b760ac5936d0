"""Join tokens: a signed JWT per booking and role, valid from 15 minutes before the start
to the end, and the links that carry them.

Claims: ``room`` (the meeting's signaling room), ``bkg`` (booking id), ``rid`` (the
booked room), ``role`` (``host`` or ``participant``), ``nbf``/``exp``/``iat``, and a
fixed issuer and audience so no other token signed with the same key is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import jwt

from signaling.booking.models import Booking, utc_now

ALGORITHM = "HS256"
ISSUER = "visio"
AUDIENCE = "visio-join"
OPENS_BEFORE_START = timedelta(minutes=15)
Role = Literal["host", "participant"]
ROLES: tuple[Role, ...] = ("host", "participant")


class TokenRefused(Exception):
    """``code`` is the signaling error code: token_expired, token_not_yet_valid, token_invalid."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class JoinClaims:
    room: str
    booking_id: int
    room_id: int
    role: Role
    not_before: datetime
    expires: datetime


class JoinTokens:
    def __init__(self, secret_key: str) -> None:
        self._key = secret_key

    def issue(self, booking: Booking, role: Role, now: datetime | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "room": booking.meeting_id,
            "bkg": booking.id,
            "rid": booking.room_id,
            "role": role,
            "iat": int((now or utc_now()).timestamp()),
            "nbf": int((booking.starts_at - OPENS_BEFORE_START).timestamp()),
            "exp": int(booking.ends_at.timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> JoinClaims:
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER,
                                options={"require": ["exp", "nbf", "room", "bkg", "role"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("token_expired", "this meeting link has expired: the "
                                                "booking is over") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token_not_yet_valid", "this meeting opens 15 minutes before "
                                                      "its start") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRefused("token_invalid", f"the meeting link is not valid ({exc})") from None
        role, room, booking_id = claims.get("role"), claims.get("room"), claims.get("bkg")
        if role not in ROLES or not isinstance(room, str) or not isinstance(booking_id, int):
            raise TokenRefused("token_invalid", "the meeting link is not valid (bad claims)")
        return JoinClaims(room=room, booking_id=booking_id, room_id=int(claims.get("rid", 0)),
                          role=role, not_before=datetime.fromtimestamp(claims["nbf"], UTC),
                          expires=datetime.fromtimestamp(claims["exp"], UTC))


def join_link(base_url: str, booking: Booking, token: str) -> str:
    """The meeting page URL for a booking: it reads ``room`` and ``token`` and joins."""
    return f"{base_url}/?{urlencode({'room': booking.meeting_id, 'token': token})}"


def links(base_url: str, booking: Booking, tokens: JoinTokens) -> dict[str, str]:
    return {role: join_link(base_url, booking, tokens.issue(booking, role)) for role in ROLES}
