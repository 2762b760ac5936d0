"""Organisations, their admins (argon2id password hashes) and their API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select

from signaling.booking.database import Database
from signaling.booking.models import DEFAULT_TIME_ZONE, Admin, Organisation, Room

API_KEY_PREFIX = "vk_"
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()  # argon2id with the library's current (RFC 9106) parameters
# Verified when the e-mail is unknown, so a login takes as long either way.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """Bad input to an account operation; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class NewOrganisation:
    organisation_id: int
    admin_id: int
    api_key: str  # shown once: only its hash is stored
    room_ids: list[int]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise AccountError("time_zone", f"unknown time zone {name!r}") from None
    return name


def check_room(name: str, max_participants: int) -> tuple[str, int]:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100:
        raise AccountError("name", "a room name has 1 to 100 characters")
    if not 1 <= max_participants <= 1000:
        raise AccountError("max_participants", "max participants must be between 1 and 1000")
    return name, max_participants


async def create_organisation(db: Database, name: str, admin_email: str, admin_password: str,
                              time_zone: str = DEFAULT_TIME_ZONE,
                              rooms: list[tuple[str, int]] | None = None) -> NewOrganisation:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 200:
        raise AccountError("name", "an organisation name has 1 to 200 characters")
    email = normalise_email(admin_email)
    if "@" not in email or len(email) > 254:
        raise AccountError("email", "the admin e-mail address is not valid")
    if len(admin_password) < MIN_PASSWORD_CHARS:
        raise AccountError("password", f"the password needs {MIN_PASSWORD_CHARS} characters "
                                       "or more")
    check_time_zone(time_zone)
    checked_rooms = [check_room(room, capacity) for room, capacity in rooms or []]
    api_key = new_api_key()
    async with db.write() as session:
        taken = await session.scalar(select(func.count()).select_from(Admin)
                                     .where(Admin.email == email))
        if taken:
            raise AccountError("email", f"an admin with e-mail {email} already exists")
        organisation = Organisation(name=name, time_zone=time_zone,
                                    api_key_hash=api_key_hash(api_key))
        session.add(organisation)
        await session.flush()
        admin = Admin(organisation_id=organisation.id, email=email,
                      password_hash=hash_password(admin_password))
        room_rows = [Room(organisation_id=organisation.id, name=room, max_participants=capacity)
                     for room, capacity in checked_rooms]
        session.add_all([admin, *room_rows])
        await session.flush()
        return NewOrganisation(organisation.id, admin.id, api_key, [r.id for r in room_rows])


async def add_room(db: Database, organisation_id: int, name: str, max_participants: int) -> Room:
    name, max_participants = check_room(name, max_participants)
    async with db.write() as session:
        exists = await session.scalar(select(Room.id).where(
            Room.organisation_id == organisation_id, Room.name == name))
        if exists is not None:
            raise AccountError("name", "a room with this name already exists")
        room = Room(organisation_id=organisation_id, name=name, max_participants=max_participants)
        session.add(room)
        await session.flush()
        return room


async def authenticate(db: Database, email: str, password: str) -> Admin | None:
    """The admin with these credentials, or None; upgrades the hash when parameters changed."""
    async with db.read() as session:
        admin = await session.scalar(select(Admin).where(Admin.email == normalise_email(email)))
    try:
        _hasher.verify(admin.password_hash if admin else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if admin is None:
        return None
    if _hasher.check_needs_rehash(admin.password_hash):
        async with db.write() as session:
            row = await session.get(Admin, admin.id)
            if row is not None:
                row.password_hash = hash_password(password)
    return admin


async def organisation_for_api_key(db: Database, key: str) -> Organisation | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    async with db.read() as session:
        found: Organisation | None = await session.scalar(
            select(Organisation).where(Organisation.api_key_hash == api_key_hash(key)))
        return found


async def rooms_of(db: Database, organisation_id: int) -> list[Room]:
    async with db.read() as session:
        rows = await session.scalars(select(Room).where(Room.organisation_id == organisation_id)
                                     .order_by(Room.name))
        return list(rows)
