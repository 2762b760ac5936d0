"""Server logs: plain text or one JSON object per line, with tokens redacted.

Meeting links carry join tokens (JWTs) and booking pages carry session
cookies: a line that quotes one must never reach a log file. Every handler
gets :class:`RedactTokens`, which rewrites the message (and any traceback)
before a formatter sees it. The JSON lines carry the room and participant
of the WebSocket the line was logged from (:data:`connection`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

# Three base64url parts, the first a JSON header ('{"' encodes as "eyJ").
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
TOKEN_PARAMETER = re.compile(r"((?:token|api_key|key|password)=)[^&\s\"'<>]+", re.IGNORECASE)
TOKEN_FIELD = re.compile(r"(\"(?:token|credential|password)\"\s*:\s*\")[^\"]*(\")", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    text = JWT.sub(REDACTED, text)
    text = TOKEN_PARAMETER.sub(rf"\g<1>{REDACTED}", text)
    return TOKEN_FIELD.sub(rf"\g<1>{REDACTED}\g<2>", text)


class RedactTokens(logging.Filter):
    """Rewrites a record's message and traceback with :func:`redact` (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


@dataclass
class Connection:
    """Who a log line is about: set for the duration of one signaling WebSocket."""

    remote: str | None
    participant: Callable[[], str | None] = lambda: None
    room: Callable[[], str | None] = lambda: None


connection: contextvars.ContextVar[Connection | None] = contextvars.ContextVar(
    "visio_connection", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, room, participant, error."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = connection.get()
        if current is not None:
            line["room"] = current.room()
            line["participant"] = current.participant()
            line["remote"] = current.remote
        for key in ("room", "participant"):
            value = getattr(record, key, None)  # logger.info(..., extra={"room": ...})
            if value is not None:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["error"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str) -> None:
    """Root handler on stderr, ``text`` or ``json``, tokens redacted either way."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactTokens())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aioice logs every candidate-pair transition at INFO: thousands of lines per meeting.
    logging.getLogger("aioice").setLevel(max(logging.WARNING, root.level))
