"""Signaling protocol v1: validation of client messages (see docs/protocol.md).

Every frame from a browser may be malformed or hostile; each one becomes
either a typed message or a ``ProtocolError`` carrying the error code the
client receives. Nothing here touches the room.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfu.allocator import SourceConstraints

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 64 * 1024
MAX_SDP_BYTES = 60 * 1024
ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_NAME_CHARS = 64
MAX_REQUEST_ID_CHARS = 64
MAX_TOKEN_CHARS = 4096
MAX_REJOIN_CHARS = 64


class ProtocolError(Exception):
    """A client message that cannot be acted on; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class Join:
    room: str
    name: str
    token: str | None = None  # the booking's join token (JWT); see docs/protocol.md
    rejoin: str | None = None  # the rejoin_key of this client's previous session (reconnection)


@dataclass(frozen=True)
class PublishOffer:
    sdp: str


@dataclass(frozen=True)
class SubscribeAnswer:
    revision: int
    sdp: str


@dataclass(frozen=True)
class SetConstraints:
    """How the client shows each remote video; drives layer choice and pausing."""

    sources: dict[str, SourceConstraints]
    on_stage: tuple[str, ...]


@dataclass(frozen=True)
class Leave:
    pass


@dataclass(frozen=True)
class Ping:
    pass


MAX_CHAT_CHARS = 1000
MAX_PARTICIPANT_ID_CHARS = 64


@dataclass(frozen=True)
class Chat:
    """A chat line for everyone in the room."""

    text: str


@dataclass(frozen=True)
class SetState:
    """What the participant shows the others; ``None`` leaves a flag unchanged."""

    mic: bool | None = None
    cam: bool | None = None
    hand: bool | None = None
    screen: bool | None = None


@dataclass(frozen=True)
class Mute:
    """Host command: turn off one participant's microphone."""

    participant_id: str


@dataclass(frozen=True)
class MuteAll:
    """Host command: turn off every other participant's microphone."""


@dataclass(frozen=True)
class AskUnmute:
    """Host command: ask one participant to turn their microphone back on."""

    participant_id: str


@dataclass(frozen=True)
class RemoveParticipant:
    """Host command: end one participant's session."""

    participant_id: str


@dataclass(frozen=True)
class LockRoom:
    """Host command: refuse (``locked``) or admit again new joins."""

    locked: bool


@dataclass(frozen=True)
class LowerHands:
    """Host command: lower every raised hand."""


@dataclass(frozen=True)
class LectureMode:
    """Host command: in lecture mode only hosts and presenters publish video."""

    enabled: bool


@dataclass(frozen=True)
class SetPresenter:
    """Host command: grant (or revoke) one participant the right to present."""

    participant_id: str
    presenter: bool


HostCommand = (Mute | MuteAll | AskUnmute | RemoveParticipant | LockRoom | LowerHands
               | LectureMode | SetPresenter)
RoomMessage = Chat | SetState | HostCommand
ClientMessage = Join | PublishOffer | SubscribeAnswer | SetConstraints | Leave | Ping | RoomMessage


@dataclass(frozen=True)
class Envelope:
    message: ClientMessage
    request_id: Any


def parse_frame(frame: str) -> Envelope:
    """Validate one text frame into a typed message, or raise ``ProtocolError``."""
    if len(frame.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"the frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", "the frame must be a JSON object")
    request_id = _request_id(data.get("id"))
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_message", "field 'type' must be a string", request_id)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}", request_id)
    try:
        return Envelope(parser(data), request_id)
    except ProtocolError as exc:
        exc.request_id = request_id
        raise


def _request_id(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProtocolError("bad_message", "field 'id' must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_REQUEST_ID_CHARS:
        raise ProtocolError("bad_message", f"field 'id' is longer than {MAX_REQUEST_ID_CHARS}")
    if isinstance(value, int) and not -(2**53) < value < 2**53:
        raise ProtocolError("bad_message", "field 'id' is out of range")
    return value


def _string(data: dict[str, Any], name: str, max_length: int) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"field {name!r} must be a string")
    if len(value) > max_length:
        raise ProtocolError("bad_message", f"field {name!r} is longer than {max_length}")
    return value


def _sdp(data: dict[str, Any]) -> str:
    sdp = _string(data, "sdp", MAX_SDP_BYTES)
    if not sdp.startswith("v=0"):
        raise ProtocolError("invalid_sdp", "field 'sdp' must be an SDP description starting v=0")
    return sdp


def _join(data: dict[str, Any]) -> Join:
    version = data.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError("unsupported_version",
                            f"protocol version {version!r} is not supported (use 1)")
    room = _string(data, "room", 64)
    if not ROOM_NAME.fullmatch(room):
        raise ProtocolError("bad_message",
                            "field 'room' must be 1-64 characters of A-Z a-z 0-9 _ . -")
    name = " ".join(_string(data, "name", 256).split())
    if not name or len(name) > MAX_NAME_CHARS:
        raise ProtocolError("bad_message", f"field 'name' must be 1-{MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):  # C0, DEL and C1 controls
        raise ProtocolError("bad_message", "field 'name' contains control characters")
    token = None if data.get("token") is None else _string(data, "token", MAX_TOKEN_CHARS)
    rejoin = None if data.get("rejoin") is None else _string(data, "rejoin", MAX_REJOIN_CHARS)
    return Join(room=room, name=name, token=token, rejoin=rejoin)


def _subscribe_answer(data: dict[str, Any]) -> SubscribeAnswer:
    revision = data.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or not 0 < revision < 2**31:
        raise ProtocolError("bad_message", "field 'revision' must be a positive integer")
    return SubscribeAnswer(revision=revision, sdp=_sdp(data))


MAX_CONSTRAINED_SOURCES = 256
MAX_HEIGHT = 4320


def _set_constraints(data: dict[str, Any]) -> SetConstraints:
    sources = data.get("sources")
    if not isinstance(sources, dict) or len(sources) > MAX_CONSTRAINED_SOURCES:
        raise ProtocolError("bad_message", f"field 'sources' must be an object of at most "
                            f"{MAX_CONSTRAINED_SOURCES} sources")
    parsed: dict[str, SourceConstraints] = {}
    for source_id, value in sources.items():
        if len(source_id) > 64 or not isinstance(value, dict):
            raise ProtocolError("bad_message", "each source must map an id to an object")
        visible = value.get("visible", True)
        max_height = value.get("max_height", 0)
        if not isinstance(visible, bool):
            raise ProtocolError("bad_message", "field 'visible' must be a boolean")
        if (isinstance(max_height, bool) or not isinstance(max_height, int)
                or not 0 <= max_height <= MAX_HEIGHT):
            raise ProtocolError("bad_message", f"field 'max_height' must be 0-{MAX_HEIGHT}")
        parsed[source_id] = SourceConstraints(visible=visible, max_height=max_height)
    on_stage = data.get("on_stage", [])
    if (not isinstance(on_stage, list) or len(on_stage) > 16
            or not all(isinstance(s, str) and len(s) <= 64 for s in on_stage)):
        raise ProtocolError("bad_message", "field 'on_stage' must be a list of source ids")
    for source_id in on_stage:
        base = parsed.get(source_id, SourceConstraints())
        parsed[source_id] = SourceConstraints(base.visible, base.max_height, on_stage=True)
    return SetConstraints(sources=parsed, on_stage=tuple(on_stage))


def _publish_offer(data: dict[str, Any]) -> PublishOffer:
    return PublishOffer(sdp=_sdp(data))


def _leave(data: dict[str, Any]) -> Leave:
    return Leave()


def _ping(data: dict[str, Any]) -> Ping:
    return Ping()


def _chat(data: dict[str, Any]) -> Chat:
    text = _string(data, "text", 4 * MAX_CHAT_CHARS).strip()
    if not text or len(text) > MAX_CHAT_CHARS:
        raise ProtocolError("bad_message", f"field 'text' must be 1-{MAX_CHAT_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise ProtocolError("bad_message", "field 'text' contains control characters")
    return Chat(text=text)


def _set_state(data: dict[str, Any]) -> SetState:
    flags: dict[str, bool | None] = {}
    for name in ("mic", "cam", "hand", "screen"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise ProtocolError("bad_message", f"field {name!r} must be a boolean")
        flags[name] = value
    return SetState(mic=flags["mic"], cam=flags["cam"], hand=flags["hand"],
                    screen=flags["screen"])


def _participant_id(data: dict[str, Any]) -> str:
    return _string(data, "participant_id", MAX_PARTICIPANT_ID_CHARS)


def _lock(data: dict[str, Any]) -> LockRoom:
    locked = data.get("locked")
    if not isinstance(locked, bool):
        raise ProtocolError("bad_message", "field 'locked' must be a boolean")
    return LockRoom(locked=locked)


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise ProtocolError("bad_message", f"field {name!r} must be a boolean")
    return value


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientMessage]] = {
    "join": _join,
    "publish_offer": _publish_offer,
    "subscribe_answer": _subscribe_answer,
    "set_constraints": _set_constraints,
    "leave": _leave,
    "ping": _ping,
    "chat": _chat,
    "set_state": _set_state,
    "mute": lambda data: Mute(_participant_id(data)),
    "mute_all": lambda data: MuteAll(),
    "ask_unmute": lambda data: AskUnmute(_participant_id(data)),
    "remove": lambda data: RemoveParticipant(_participant_id(data)),
    "lock": _lock,
    "lower_hands": lambda data: LowerHands(),
    "lecture": lambda data: LectureMode(_flag(data, "enabled")),
    "set_presenter": lambda data: SetPresenter(_participant_id(data), _flag(data, "presenter")),
}


def error_message(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        reply["id"] = request_id
    return reply
