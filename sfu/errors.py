"""Typed failures of the SFU API; the signaling server turns each into a protocol error code."""

from __future__ import annotations


class SfuError(Exception):
    """A request the SFU refused; the room is unaffected."""

    code = "internal"


class InvalidSdp(SfuError):
    code = "invalid_sdp"


class StaleRevision(SfuError):
    code = "stale_revision"


class RoomFull(SfuError):
    code = "room_full"


class UnknownParticipant(SfuError):
    code = "not_joined"
