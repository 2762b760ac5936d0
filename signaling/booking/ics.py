"""One booking as an iCalendar file (RFC 5545) for the organiser's calendar."""

from __future__ import annotations

from datetime import datetime

from signaling.booking.models import Booking, utc_now

PRODUCT_ID = "-//visio//booking//FR"


def _escape(text: str) -> str:
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with CRLF + space (RFC 5545 §3.1)."""
    parts: list[str] = []
    current = ""
    for char in line:
        limit = 75 if not parts else 74
        if len((current + char).encode()) > limit:
            parts.append(current)
            current = char
        else:
            current += char
    parts.append(current)
    return "\r\n ".join(parts)


def _utc(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def booking_ics(booking: Booking, participant_link: str | None, host: str) -> str:
    description = booking.title
    if participant_link:
        description += f"\n\nLien de la réunion / meeting link: {participant_link}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODUCT_ID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:booking-{booking.id}-{booking.meeting_id}@{host}",
        f"DTSTAMP:{_utc(utc_now())}",
        f"DTSTART:{_utc(booking.starts_at)}",
        f"DTEND:{_utc(booking.ends_at)}",
        f"SUMMARY:{_escape(booking.title)}",
        f"LOCATION:{_escape(booking.room.name)}",
        f"DESCRIPTION:{_escape(description)}",
        f"STATUS:{'CANCELLED' if booking.cancelled_at else 'CONFIRMED'}",
    ]
    if participant_link:
        lines.append(f"URL:{participant_link}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(_fold(line) + "\r\n" for line in lines)
