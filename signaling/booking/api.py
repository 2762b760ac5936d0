"""REST API for school portals: rooms, bookings and their links, per-organisation API key.

Every error is JSON: ``{"error": {"code", "field", "message", "errors": [...]}}``
where ``field`` names the offending input. The OpenAPI description is served at
``/api/v1/openapi.json`` (see ``openapi.py``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from signaling.booking import accounts, calendar
from signaling.booking.calendar import BookingError, BookingNotFound, BookingRequest, FieldError
from signaling.booking.context import BOOKING_KEY, BookingContext
from signaling.booking.models import Booking, Organisation
from signaling.booking.openapi import openapi_document
from signaling.booking.tokens import OPENS_BEFORE_START, links

PREFIX = "/api/v1"
MAX_BODY_BYTES = 64 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/rooms", list_rooms)
    app.router.add_get(f"{PREFIX}/bookings", list_bookings)
    app.router.add_post(f"{PREFIX}/bookings", create_booking)
    app.router.add_get(f"{PREFIX}/bookings/{{booking_id}}", show_booking)
    app.router.add_delete(f"{PREFIX}/bookings/{{booking_id}}", cancel_booking)
    app.router.add_get(f"{PREFIX}/bookings/{{booking_id}}/links", booking_links)


class ApiError(Exception):
    def __init__(self, status: int, *errors: FieldError) -> None:
        super().__init__(errors[0].message)
        self.status = status
        self.errors = list(errors)


def error_response(status: int, *errors: FieldError) -> web.Response:
    first = errors[0]
    body = {"error": {"code": first.code, "field": first.field, "message": first.message,
                      "errors": [{"field": e.field, "code": e.code, "message": e.message}
                                 for e in errors]}}
    return web.json_response(body, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Under /api/v1, turn every refusal into the JSON error body."""
    if not request.path.startswith(PREFIX + "/"):
        response: web.StreamResponse = await handler(request)
        return response
    try:
        response = await handler(request)
        return response
    except ApiError as exc:
        return error_response(exc.status, *exc.errors)
    except BookingError as exc:
        status = 409 if "conflict" in exc.codes else (
            404 if "not_found" in exc.codes else 422)
        return error_response(status, *exc.errors)
    except BookingNotFound as exc:
        return error_response(404, FieldError("booking_id", "not_found", str(exc)))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, FieldError("path", exc.reason.lower().replace(
                " ", "_"), exc.reason))
        raise


def _context(request: web.Request) -> BookingContext:
    return request.app[BOOKING_KEY]


async def _organisation(request: web.Request) -> Organisation:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, FieldError("Authorization", "unauthorized",
                                       "send the organisation's API key as "
                                       "'Authorization: Bearer vk_...'"))
    organisation = await accounts.organisation_for_api_key(_context(request).db, key.strip())
    if organisation is None:
        raise ApiError(401, FieldError("Authorization", "unauthorized", "unknown API key"))
    return organisation


def _int_path(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ApiError(404, FieldError(name, "not_found", f"{name} must be an integer")) from None


def _base_url(request: web.Request) -> str:
    return _context(request).base_url(request)


def booking_json(booking: Booking) -> dict[str, Any]:
    return {
        "id": booking.id,
        "room_id": booking.room_id,
        "room_name": booking.room.name,
        "title": booking.title,
        "start": _iso(booking.starts_at),
        "end": _iso(booking.ends_at),
        "time_zone": booking.room.organisation.time_zone,
        "expected_participants": booking.expected_participants,
        "created_by": booking.created_by,
        "status": "cancelled" if booking.cancelled_at else "booked",
        "cancelled_at": _iso(booking.cancelled_at) if booking.cancelled_at else None,
    }


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _links_json(request: web.Request, booking: Booking) -> dict[str, Any]:
    made = links(_base_url(request), booking, _context(request).tokens)
    return {**made, "valid_from": _iso(booking.starts_at - OPENS_BEFORE_START),
            "valid_until": _iso(booking.ends_at)}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(_base_url(request)))


async def list_rooms(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    rooms = await accounts.rooms_of(_context(request).db, organisation.id)
    return web.json_response({"rooms": [
        {"id": r.id, "name": r.name, "max_participants": r.max_participants} for r in rooms]})


async def list_bookings(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    query = request.query
    room_id = _optional_int(query.get("room_id"), "room_id")
    start = _optional_time(query.get("from"), "from")
    end = _optional_time(query.get("to"), "to")
    include_cancelled = query.get("include_cancelled", "false").lower() in ("1", "true", "yes")
    found = await calendar.find_bookings(_context(request).db, organisation.id, room_id=room_id,
                                         start=start, end=end,
                                         include_cancelled=include_cancelled)
    return web.json_response({"bookings": [booking_json(b) for b in found]})


async def create_booking(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    body = await _json_body(request)
    booking_request = BookingRequest(
        room_id=_required_int(body, "room_id"),
        title=_required_string(body, "title"),
        starts_at=_required_time(body, "start"),
        ends_at=_required_time(body, "end"),
        expected_participants=_required_int(body, "expected_participants"),
    )
    created_by = body.get("created_by")
    if not isinstance(created_by, str) or not created_by.strip():
        created_by = "api"
    booking = await calendar.create_booking(_context(request).db, organisation.id,
                                            booking_request, created_by.strip()[:254])
    return web.json_response({**booking_json(booking), "links": _links_json(request, booking)},
                             status=201)


async def show_booking(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    booking = await calendar.get_booking(_context(request).db, organisation.id,
                                         _int_path(request, "booking_id"))
    return web.json_response(booking_json(booking))


async def cancel_booking(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    booking_id = _int_path(request, "booking_id")
    db = _context(request).db
    await calendar.cancel_booking(db, organisation.id, booking_id)
    return web.json_response(booking_json(await calendar.get_booking(db, organisation.id,
                                                                     booking_id)))


async def booking_links(request: web.Request) -> web.Response:
    organisation = await _organisation(request)
    booking = await calendar.get_booking(_context(request).db, organisation.id,
                                         _int_path(request, "booking_id"))
    if booking.cancelled_at is not None:
        raise ApiError(409, FieldError("booking_id", "cancelled", "this booking was cancelled"))
    return web.json_response(_links_json(request, booking))


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, FieldError("body", "too_large",
                                       f"the body is limited to {MAX_BODY_BYTES} bytes"))
    raw = await request.read()  # aiohttp caps it at client_max_size (1 MiB)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, FieldError("body", "too_large",
                                       f"the body is limited to {MAX_BODY_BYTES} bytes"))
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, FieldError("body", "bad_json", "the body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise ApiError(400, FieldError("body", "bad_json", "the body must be a JSON object"))
    return body


def _missing(field: str, what: str) -> ApiError:
    return ApiError(422, FieldError(field, "required", f"field {field!r} must be {what}"))


def _required_int(body: dict[str, Any], field: str) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _missing(field, "an integer")
    return value


def _required_string(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _missing(field, "a string")
    return value


def _required_time(body: dict[str, Any], field: str) -> datetime:
    value = body.get(field)
    if not isinstance(value, str):
        raise _missing(field, "an ISO 8601 date-time with offset, e.g. 2030-03-14T09:00:00+01:00")
    parsed = _optional_time(value, field)
    assert parsed is not None
    return parsed


def _optional_time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, FieldError(field, "invalid", f"field {field!r} is not an ISO 8601 "
                                                         "date-time")) from None
    if parsed.tzinfo is None:
        raise ApiError(422, FieldError(field, "invalid", f"field {field!r} needs a UTC offset "
                                                         "(e.g. Z or +01:00)"))
    return parsed


def _optional_int(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(422, FieldError(field, "invalid",
                                       f"field {field!r} must be an integer")) from None
