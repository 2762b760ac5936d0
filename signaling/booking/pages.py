"""The booking web pages under /booking/: log in, week calendar, booking form and page.

Server-rendered (Jinja2, autoescaped), usable without JavaScript except the
copy buttons. The session is a signed cookie (HttpOnly, SameSite=Lax, Secure
except over plain HTTP to a loopback address); every form carries a CSRF
token that must match the ``visio_csrf`` cookie (double submit) and, when the
browser sends one, the Origin must be this server.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import jinja2
import jwt
import segno
from aiohttp import web
from multidict import MultiDictProxy

from signaling.booking import accounts, calendar
from signaling.booking.calendar import BookingError, BookingNotFound, BookingRequest, FieldError
from signaling.booking.context import BOOKING_KEY, BookingContext
from signaling.booking.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator
from signaling.booking.ics import booking_ics
from signaling.booking.models import Booking, Organisation, Room, utc_now
from signaling.booking.tokens import links

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "visio_session"
CSRF_COOKIE = "visio_csrf"
LANG_COOKIE = "visio_lang"
SESSION_AUDIENCE = "visio-session"
SESSION_LIFETIME = timedelta(hours=12)
FIRST_HOUR, LAST_HOUR = 7, 20  # the calendar shows 07:00-20:00
SLOT = timedelta(minutes=30)
NOTICES = {"created": "created_notice", "updated": "updated_notice",
           "cancelled": "cancelled_notice"}

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Visitor:
    admin_id: int
    organisation_id: int
    email: str


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/booking", to_home)
    router.add_get("/booking/", home)
    router.add_get("/booking/login", login_form)
    router.add_post("/booking/login", login)
    router.add_post("/booking/logout", logout)
    router.add_get("/booking/rooms", rooms_page)
    router.add_post("/booking/rooms", add_room)
    router.add_get(r"/booking/rooms/{room_id:\d+}", week)
    router.add_get(r"/booking/rooms/{room_id:\d+}/new", new_booking_form)
    router.add_post(r"/booking/rooms/{room_id:\d+}/new", create_booking)
    router.add_get(r"/booking/bookings/{booking_id:\d+}", show_booking)
    router.add_get(r"/booking/bookings/{booking_id:\d+}/edit", edit_booking_form)
    router.add_post(r"/booking/bookings/{booking_id:\d+}/edit", edit_booking)
    router.add_get(r"/booking/bookings/{booking_id:\d+}/cancel", cancel_form)
    router.add_post(r"/booking/bookings/{booking_id:\d+}/cancel", cancel_booking)
    router.add_get(r"/booking/bookings/{booking_id:\d+}/booking.ics", download_ics)
    router.add_static("/booking/static", HERE / "static")


# ---------------------------------------------------------------- plumbing


def _context(request: web.Request) -> BookingContext:
    return request.app[BOOKING_KEY]


def _redirect(location: str) -> NoReturn:
    raise web.HTTPSeeOther(location)


def _language(request: web.Request) -> str:
    asked = request.query.get("lang") or request.cookies.get(LANG_COOKIE) or DEFAULT_LANGUAGE
    return asked if asked in LANGUAGES else DEFAULT_LANGUAGE


def _secure_cookies(request: web.Request) -> bool:
    """Secure everywhere but plain HTTP to a loopback address (a developer's laptop, tests)."""
    if request.secure or request.headers.get("X-Forwarded-Proto", "") == "https":
        return True
    host = (request.url.host or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None = None, samesite: str = "Lax") -> None:
    response.set_cookie(name, value, max_age=max_age, path="/booking", httponly=True,
                        secure=_secure_cookies(request), samesite=samesite)


def _csrf_token(request: web.Request) -> tuple[str, bool]:
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) >= 32:
        return existing, False
    return secrets.token_urlsafe(32), True


async def _form(request: web.Request) -> MultiDictProxy[Any]:
    """The posted form, after the CSRF and Origin checks."""
    form = await request.post()
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise _forbidden(request)
    sent = str(form.get("csrf", ""))
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise _forbidden(request)
    return form


def _forbidden(request: web.Request) -> web.HTTPForbidden:
    t = Translator(_language(request))
    return web.HTTPForbidden(text=t("err_csrf"), content_type="text/plain")


def _render(request: web.Request, template: str, status: int = 200,
            **values: Any) -> web.Response:
    language = _language(request)
    t = Translator(language)
    csrf, new_csrf = _csrf_token(request)
    other = "en" if language == "fr" else "fr"
    query = {**request.query, "lang": other}
    query.pop("done", None)
    page = _templates.get_template(template).render(
        t=t, lang=language, csrf=csrf, development=_context(request).development,
        switch_url=f"{request.path}?{urlencode(query)}", visitor=values.pop("visitor", None),
        organisation=values.pop("organisation", None), **values)
    response = web.Response(text=page, status=status, content_type="text/html",
                            charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if new_csrf:
        _set_cookie(request, response, CSRF_COOKIE, csrf, samesite="Strict")
    if request.query.get("lang") in LANGUAGES:
        _set_cookie(request, response, LANG_COOKIE, language, max_age=365 * 24 * 3600)
    return response


def _visitor(request: web.Request) -> Visitor | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        claims = jwt.decode(cookie, _context(request).secret_key, algorithms=["HS256"],
                            audience=SESSION_AUDIENCE, options={"require": ["exp", "sub"]})
        return Visitor(int(claims["sub"]), int(claims["org"]), str(claims["email"]))
    except (jwt.InvalidTokenError, KeyError, ValueError):
        return None


async def _require_visitor(request: web.Request) -> tuple[Visitor, Organisation]:
    visitor = _visitor(request)
    if visitor is not None:
        async with _context(request).db.read() as session:
            organisation = await session.get(Organisation, visitor.organisation_id)
        if organisation is not None:
            return visitor, organisation
    raise web.HTTPSeeOther("/booking/login?" + urlencode({"next": request.path_qs}))


def _zone(organisation: Organisation) -> ZoneInfo:
    return ZoneInfo(organisation.time_zone)


# ---------------------------------------------------------------- log in / out


async def to_home(request: web.Request) -> web.Response:
    _redirect("/booking/")


async def home(request: web.Request) -> web.Response:
    visitor, _ = await _require_visitor(request)
    rooms = await accounts.rooms_of(_context(request).db, visitor.organisation_id)
    return _redirect(f"/booking/rooms/{rooms[0].id}" if rooms else "/booking/rooms")


async def login_form(request: web.Request) -> web.Response:
    return _render(request, "login.html", email="", failed=False,
                   next=request.query.get("next", ""))


async def login(request: web.Request) -> web.Response:
    form = await _form(request)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_page = str(form.get("next", ""))
    admin = await accounts.authenticate(_context(request).db, email, password)
    if admin is None:
        return _render(request, "login.html", status=401, email=email, failed=True,
                       next=next_page)
    now = utc_now()
    cookie = jwt.encode({"sub": str(admin.id), "org": admin.organisation_id,
                         "email": admin.email, "aud": SESSION_AUDIENCE, "iat": now,
                         "exp": now + SESSION_LIFETIME},
                        _context(request).secret_key, algorithm="HS256")
    target = next_page if next_page.startswith("/booking/") else "/booking/"
    response = web.HTTPSeeOther(target)
    _set_cookie(request, response, SESSION_COOKIE, cookie,
                max_age=int(SESSION_LIFETIME.total_seconds()))
    raise response


async def logout(request: web.Request) -> web.Response:
    await _form(request)
    response = web.HTTPSeeOther("/booking/login")
    response.del_cookie(SESSION_COOKIE, path="/booking")
    raise response


# ---------------------------------------------------------------- rooms


async def rooms_page(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    rooms = await accounts.rooms_of(_context(request).db, organisation.id)
    return _render(request, "rooms.html", visitor=visitor, organisation=organisation,
                   rooms=rooms, errors={}, values={"name": "", "max_participants": "30"})


async def add_room(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    form = await _form(request)
    values = {"name": str(form.get("name", "")),
              "max_participants": str(form.get("max_participants", ""))}
    t = Translator(_language(request))
    errors: dict[str, str] = {}
    try:
        capacity = int(values["max_participants"])
    except ValueError:
        errors["max_participants"] = t("err_invalid")
    if not errors:
        try:
            room = await accounts.add_room(_context(request).db, organisation.id,
                                           values["name"], capacity)
            return _redirect(f"/booking/rooms/{room.id}")
        except accounts.AccountError as exc:
            errors[exc.field] = str(exc)
    rooms = await accounts.rooms_of(_context(request).db, organisation.id)
    return _render(request, "rooms.html", status=422, visitor=visitor,
                   organisation=organisation, rooms=rooms, errors=errors, values=values)


async def _room_of(request: web.Request, organisation: Organisation, room_id: int) -> Room:
    async with _context(request).db.read() as session:
        room = await session.get(Room, room_id)
    if room is None or room.organisation_id != organisation.id:
        raise web.HTTPNotFound()
    return room


# ---------------------------------------------------------------- week calendar


@dataclass
class Block:
    booking: Booking
    top: float  # percent of the day column
    height: float
    label: str
    tall: bool  # room for the time under a two-line title


@dataclass
class Day:
    date: date
    label: str
    today: bool
    slots: list[tuple[str, str, bool]]  # (start param, aria label, bookable)
    blocks: list[Block]


async def week(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    room = await _room_of(request, organisation, int(request.match_info["room_id"]))
    zone = _zone(organisation)
    t = Translator(_language(request))
    now = utc_now()
    today = now.astimezone(zone).date()
    try:
        asked = date.fromisoformat(request.query.get("week", today.isoformat()))
    except ValueError:
        asked = today
    monday = asked - timedelta(days=asked.weekday())
    days_start = datetime.combine(monday, time(0), zone)
    days_end = datetime.combine(monday + timedelta(days=7), time(0), zone)
    booked = await calendar.find_bookings(_context(request).db, organisation.id,
                                          room_id=room.id, start=days_start, end=days_end)
    day_minutes = (LAST_HOUR - FIRST_HOUR) * 60
    days: list[Day] = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        column_start = datetime.combine(day, time(FIRST_HOUR), zone)
        column_end = datetime.combine(day, time(LAST_HOUR), zone)
        slots = []
        moment = column_start
        while moment < column_end:
            label = t("book_at", day=t.short_day(day), time=t.time(moment))
            free = not any(b.starts_at < moment + SLOT and moment < b.ends_at for b in booked)
            slots.append((moment.strftime("%Y-%m-%dT%H:%M"), label, moment + SLOT > now and free))
            moment += SLOT
        blocks = []
        for booking in booked:
            start, end = booking.starts_at.astimezone(zone), booking.ends_at.astimezone(zone)
            if end <= column_start or start >= column_end:
                continue
            top = max(0.0, (start - column_start).total_seconds() / 60) / day_minutes * 100
            bottom = min(day_minutes, (end - column_start).total_seconds() / 60)
            blocks.append(Block(booking, top, max(bottom / day_minutes * 100 - top, 3.0),
                                t.range(start, end), end - start >= timedelta(minutes=90)))
        days.append(Day(day, t.short_day(day), day == today, slots, blocks))
    rooms = await accounts.rooms_of(_context(request).db, organisation.id)
    return _render(request, "week.html", visitor=visitor, organisation=organisation,
                   room=room, rooms=rooms, days=days,
                   hours=[f"{h:02d}:00" for h in range(FIRST_HOUR, LAST_HOUR)],
                   week_label=t("week_of", date=t.long_date(monday)),
                   previous=(monday - timedelta(days=7)).isoformat(),
                   next=(monday + timedelta(days=7)).isoformat(), zone=organisation.time_zone)


# ---------------------------------------------------------------- booking form


def _form_values(start: datetime | None, end: datetime | None, title: str = "",
                 people: str = "") -> dict[str, str]:
    return {"title": title,
            "date": start.strftime("%Y-%m-%d") if start else "",
            "start": start.strftime("%H:%M") if start else "",
            "end": end.strftime("%H:%M") if end else "",
            "expected_participants": people}


def _parse_booking_form(form: MultiDictProxy[Any], zone: ZoneInfo, room_id: int,
                        t: Translator) -> tuple[dict[str, str], BookingRequest | None,
                                                dict[str, str]]:
    values = {name: str(form.get(name, "")).strip()
              for name in ("title", "date", "start", "end", "expected_participants")}
    errors: dict[str, str] = {}
    for name in ("title", "date", "start", "end", "expected_participants"):
        if not values[name]:
            errors[name] = t("err_required")
    day = start_time = end_time = None
    people = 0
    try:
        day = date.fromisoformat(values["date"]) if values["date"] else None
    except ValueError:
        errors["date"] = t("err_invalid")
    for name in ("start", "end"):
        if values[name] and name not in errors:
            try:
                parsed = time.fromisoformat(values[name])
            except ValueError:
                errors[name] = t("err_invalid")
                continue
            if name == "start":
                start_time = parsed
            else:
                end_time = parsed
    if values["expected_participants"]:
        try:
            people = int(values["expected_participants"])
        except ValueError:
            errors["expected_participants"] = t("err_invalid")
    if errors or day is None or start_time is None or end_time is None:
        return values, None, errors
    request = BookingRequest(room_id=room_id, title=values["title"],
                             starts_at=datetime.combine(day, start_time, zone),
                             ends_at=datetime.combine(day, end_time, zone),
                             expected_participants=people)
    return values, request, errors


def _booking_errors(error: BookingError, t: Translator, room: Room,
                    zone: ZoneInfo) -> dict[str, str]:
    messages: dict[str, str] = {}
    for item in error.errors:
        messages.setdefault(item.field, _message(item, t, room, zone))
    return messages


def _message(item: FieldError, t: Translator, room: Room, zone: ZoneInfo) -> str:
    if item.code == "over_capacity":
        return t("err_over_capacity", n=room.max_participants)
    if item.code == "conflict" and item.other is not None:
        title, start, end = item.other
        return t("err_conflict_with", title=title,
                 time=t.span(start.astimezone(zone), end.astimezone(zone)))
    text = t(f"err_{item.code}")
    return item.message if text == f"err_{item.code}" else text


async def new_booking_form(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    room = await _room_of(request, organisation, int(request.match_info["room_id"]))
    zone = _zone(organisation)
    try:
        start = datetime.fromisoformat(request.query["start"]).replace(tzinfo=zone)
    except (KeyError, ValueError):
        start = None
    values = _form_values(start, start + timedelta(hours=1) if start else None)
    return _render(request, "booking_form.html", visitor=visitor, organisation=organisation,
                   room=room, values=values, errors={}, booking=None,
                   action=f"/booking/rooms/{room.id}/new")


async def create_booking(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    room = await _room_of(request, organisation, int(request.match_info["room_id"]))
    form = await _form(request)
    t = Translator(_language(request))
    values, booking_request, errors = _parse_booking_form(form, _zone(organisation), room.id, t)
    if booking_request is not None:
        try:
            booking = await calendar.create_booking(_context(request).db, organisation.id,
                                                    booking_request, visitor.email)
            return _redirect(f"/booking/bookings/{booking.id}?done=created")
        except BookingError as exc:
            errors = _booking_errors(exc, t, room, _zone(organisation))
    return _render(request, "booking_form.html", status=422, visitor=visitor,
                   organisation=organisation, room=room, values=values, errors=errors,
                   booking=None, action=f"/booking/rooms/{room.id}/new")


async def _booking_of(request: web.Request, organisation: Organisation) -> Booking:
    try:
        return await calendar.get_booking(_context(request).db, organisation.id,
                                          int(request.match_info["booking_id"]))
    except BookingNotFound:
        raise web.HTTPNotFound() from None


async def edit_booking_form(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    zone = _zone(organisation)
    values = _form_values(booking.starts_at.astimezone(zone), booking.ends_at.astimezone(zone),
                          booking.title, str(booking.expected_participants))
    return _render(request, "booking_form.html", visitor=visitor, organisation=organisation,
                   room=booking.room, values=values, errors={}, booking=booking,
                   action=f"/booking/bookings/{booking.id}/edit")


async def edit_booking(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    form = await _form(request)
    t = Translator(_language(request))
    zone = _zone(organisation)
    values, booking_request, errors = _parse_booking_form(form, zone, booking.room_id, t)
    if booking_request is not None:
        try:
            await calendar.update_booking(_context(request).db, organisation.id, booking.id,
                                          booking_request)
            return _redirect(f"/booking/bookings/{booking.id}?done=updated")
        except BookingError as exc:
            errors = _booking_errors(exc, t, booking.room, zone)
    return _render(request, "booking_form.html", status=422, visitor=visitor,
                   organisation=organisation, room=booking.room, values=values,
                   errors=errors, booking=booking,
                   action=f"/booking/bookings/{booking.id}/edit")


# ---------------------------------------------------------------- booking page


async def show_booking(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    zone = _zone(organisation)
    t = Translator(_language(request))
    now = utc_now()
    status = ("cancelled" if booking.cancelled_at else "past" if booking.ends_at <= now
              else "booked")
    meeting_links = (links(_context(request).base_url(request), booking,
                           _context(request).tokens) if status == "booked" else None)
    qr = (segno.make(meeting_links["participant"], error="m")
          .svg_inline(scale=3, dark="#1b1f24", title=t("qr_caption"))
          if meeting_links else None)
    notice = NOTICES.get(request.query.get("done", ""))
    return _render(request, "booking.html", visitor=visitor, organisation=organisation,
                   booking=booking, room=booking.room, booking_status=status,
                   links=meeting_links,
                   qr=qr, notice=t(notice) if notice else None,
                   when=t.span(booking.starts_at.astimezone(zone),
                               booking.ends_at.astimezone(zone)),
                   week=booking.starts_at.astimezone(zone).date().isoformat())


async def download_ics(request: web.Request) -> web.Response:
    _, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    participant = None
    if booking.cancelled_at is None and booking.ends_at > utc_now():
        participant = links(_context(request).base_url(request), booking,
                            _context(request).tokens)["participant"]
    body = booking_ics(booking, participant, request.url.host or "visio")
    return web.Response(body=body.encode(), content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition":
                                 f'attachment; filename="reservation-{booking.id}.ics"'})


async def cancel_form(request: web.Request) -> web.Response:
    visitor, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    zone = _zone(organisation)
    t = Translator(_language(request))
    return _render(request, "cancel.html", visitor=visitor, organisation=organisation,
                   booking=booking, room=booking.room,
                   when=t.span(booking.starts_at.astimezone(zone),
                               booking.ends_at.astimezone(zone)))


async def cancel_booking(request: web.Request) -> web.Response:
    _, organisation = await _require_visitor(request)
    booking = await _booking_of(request, organisation)
    await _form(request)
    await calendar.cancel_booking(_context(request).db, organisation.id, booking.id)
    return _redirect(f"/booking/bookings/{booking.id}?done=cancelled")
