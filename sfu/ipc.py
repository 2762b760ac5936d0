"""Length-prefixed JSON messages between the signaling process and its SFU workers.

One stream socket (a Unix socketpair) per worker carries three kinds of
message, each one JSON object preceded by its length as a 4-byte big-endian
integer (docs/ipc.md):

* request ``{"id": 7, "method": "join", "params": {...}}`` (signaling → worker)
* reply ``{"id": 7, "result": ...}`` or ``{"id": 7, "error": {"code", "message"}}``
* push ``{"event": {...}, "participant_id": "p-…"}`` or ``{"load": {...}}`` (worker → signaling)

Errors travel as the ``code`` of an ``SfuError`` subclass, so the signaling
server maps them to protocol error codes exactly as when the SFU runs in-process.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from sfu.errors import InvalidSdp, RoomFull, SfuError, StaleRevision, UnknownParticipant

HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a stats reply of a busy worker fits; garbage does not

Message = dict[str, Any]

_ERRORS: dict[str, type[SfuError]] = {
    cls.code: cls for cls in (InvalidSdp, StaleRevision, RoomFull, UnknownParticipant)}


class IpcError(Exception):
    """The peer broke the framing (oversized or non-JSON message): the link is unusable."""


def encode(message: Message) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise IpcError(f"message of {len(body)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> Message:
    """The next message; ``asyncio.IncompleteReadError`` when the peer closed the socket."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise IpcError(f"announced message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")
    body = await reader.readexactly(size)
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise IpcError(f"message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise IpcError("message is not a JSON object")
    return message


def error_reply(request_id: Any, exc: BaseException) -> Message:
    """The reply for a failed request: SFU refusals keep their code, the rest is internal."""
    code = exc.code if isinstance(exc, SfuError) else "internal"
    return {"id": request_id, "error": {"code": code, "message": str(exc) or type(exc).__name__}}


def raise_error(error: Any) -> None:
    """Re-raise a reply's ``error`` on the requesting side as the matching ``SfuError``."""
    code = str(error.get("code", "internal")) if isinstance(error, dict) else "internal"
    text = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    cls = _ERRORS.get(code, SfuError)
    raise cls(text)
