"""One browser's WebSocket: translates protocol messages into SFU calls and SFU events back.

Modelled on Galène's client translator: the session knows the protocol and
the SFU API, nothing about RTP. A bad message gets a typed error and the
session (and the room) carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from sfu import SfuApi, SfuError
from sfu.allocator import SourceConstraints
from signaling.booking.gate import Admission, JoinGate, JoinRefused
from signaling.cluster.placement import Handoff, Placement, RoomElsewhere
from signaling.meeting import (
    Meeting,
    MeetingRegistry,
    Member,
    RateWindow,
    offers_video,
    registry_for,
)
from signaling.protocol import (
    PROTOCOL_VERSION,
    AskUnmute,
    Chat,
    Envelope,
    HostCommand,
    Join,
    Leave,
    LectureMode,
    LockRoom,
    LowerHands,
    Mute,
    MuteAll,
    Ping,
    ProtocolError,
    PublishOffer,
    RemoveParticipant,
    RoomMessage,
    SetConstraints,
    SetPresenter,
    SetState,
    SubscribeAnswer,
    error_message,
    parse_frame,
)

logger = logging.getLogger(__name__)

INVALID_FRAME_LIMIT = 50
INVALID_FRAME_WINDOW = 10.0  # seconds
CHAT_LIMIT = 10  # chat messages per CHAT_WINDOW per socket
CHAT_WINDOW = 10.0
ROOM_MESSAGE_LIMIT = 30  # other room messages (state, host commands) per window
ROOM_MESSAGE_WINDOW = 10.0


class SignalingSession:
    """Serves one participant over one WebSocket, from join to leave."""

    def __init__(self, ws: web.WebSocketResponse, sfu: SfuApi,
                 ice_servers: list[dict[str, Any]], gate: JoinGate | None = None,
                 meetings: MeetingRegistry | None = None,
                 placement: Placement | None = None) -> None:
        self._ws = ws
        # Several nodes (signaling/cluster): a join for a room hosted elsewhere ends this
        # session without closing the socket; ``handoff`` says where it goes.
        self._placement = placement
        self.handoff: Handoff | None = None
        self._sfu = sfu
        self._meetings = meetings if meetings is not None else registry_for(sfu)
        self._meeting: Meeting | None = None
        self._member: Member | None = None
        self._chat_rate = RateWindow(CHAT_LIMIT, CHAT_WINDOW)
        self._room_rate = RateWindow(ROOM_MESSAGE_LIMIT, ROOM_MESSAGE_WINDOW)
        self._gate = gate
        self._ice_servers = ice_servers
        self._send_lock = asyncio.Lock()
        self._participant_id: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._invalid_frames: deque[float] = deque()
        self._closing = False
        # The client's last set_constraints, and the publisher of each video source
        # it may receive: lecture mode hides the videos of non-presenters on top.
        self._constraints: dict[str, SourceConstraints] = {}
        self._video_of: dict[str, str] = {}

    async def run(self, first: str | None = None) -> None:
        """Serves the socket; ``first`` is a frame already read (a replayed join)."""
        try:
            if first is not None:
                await self._handle_frame(first)
            while not self._closing:
                frame = await self._ws.receive()
                if frame.type == WSMsgType.TEXT:
                    await self._handle_frame(frame.data)
                elif frame.type == WSMsgType.BINARY:
                    await self._reject(ProtocolError("bad_json", "binary frames are not accepted"))
                else:
                    break
        finally:
            await self._finish()

    async def _handle_frame(self, frame: str) -> None:
        try:
            envelope = parse_frame(frame)
            await self._dispatch(envelope)
        except RoomElsewhere as exc:
            self.handoff = Handoff(exc, frame)
            self._closing = True
        except ProtocolError as exc:
            await self._reject(exc)
        except SfuError as exc:
            await self._send(error_message(exc.code, str(exc), _request_id(frame)))
        except Exception:
            logger.exception("signaling request failed")
            await self._send(error_message("internal", "the server failed to handle this "
                                           "request; it can be retried", _request_id(frame)))

    async def _dispatch(self, envelope: Envelope) -> None:
        message, request_id = envelope.message, envelope.request_id
        if isinstance(message, Ping):
            await self._send(_reply("pong", request_id))
            return
        if isinstance(message, Join):
            await self._join(message, request_id)
            return
        if self._participant_id is None:
            raise ProtocolError("not_joined", "send 'join' first", request_id)
        if isinstance(message, PublishOffer):
            meeting, member = self._meeting, self._member
            if (meeting is not None and member is not None
                    and not meeting.may_publish_video(member) and offers_video(message.sdp)):
                raise ProtocolError("not_presenter", "lecture mode: only the host and "
                                    "presenters may send video", request_id)
            answer = await self._sfu.publish(self._participant_id, message.sdp)
            await self._send(_reply("publish_answer", request_id, sdp=answer))
        elif isinstance(message, SubscribeAnswer):
            await self._sfu.answer_subscription(self._participant_id, message.revision,
                                                message.sdp)
        elif isinstance(message, SetConstraints):
            self._constraints = message.sources
            self._apply_constraints()
        elif isinstance(message, Leave):
            self._closing = True
        else:
            await self._room_message(message, request_id)

    async def _join(self, message: Join, request_id: Any) -> None:
        if self._participant_id is not None:
            raise ProtocolError("already_joined", "this socket has already joined a room",
                                request_id)
        admission = Admission(role="participant", max_participants=None)
        if self._gate is not None:
            try:
                admission = await self._gate.admit(message.room, message.token)
            except JoinRefused as exc:
                raise ProtocolError(exc.code, str(exc), request_id) from None
        if self._placement is not None:  # after the gate: a refused join places no room
            await self._placement.place(message.room)  # RoomElsewhere: hosted on another node
        meeting = self._meetings.get(message.room)
        # A reconnection (its old rejoin_key): same role and right to present, and
        # a locked room lets it back in.
        previous = meeting.redeem(message.rejoin) if meeting is not None else None
        if (meeting is not None and meeting.locked and admission.role != "host"
                and previous is None):
            raise ProtocolError("room_locked", "the host has locked this meeting", request_id)
        role = admission.role
        # Development mode (no token): the first participant of a room is its host.
        if message.token is None and (meeting is None or not meeting.members):
            role = "host"
        if previous is not None and message.token is None:
            role = "host" if previous.role == "host" else "participant"
        # No await between this count and the SFU adding the participant: no race.
        if (admission.max_participants is not None
                and self._sfu.room_size(message.room) >= admission.max_participants):
            raise ProtocolError("room_full", f"this meeting is full ({admission.max_participants} "
                                             "participants)", request_id)
        result = await self._sfu.join(message.room, message.name)
        self._participant_id = result.participant_id
        self._member = Member(result.participant_id, message.name, role, self._send,
                              remove=self._removed, refresh=self._apply_constraints,
                              presenter=previous.presenter if previous is not None else False)
        self._note_sources(result.sources)
        self._meeting = self._meetings.enter(result.room_id, self._member)
        await self._send(_reply(
            "joined", request_id,
            v=PROTOCOL_VERSION,
            room=result.room_id,
            participant_id=result.participant_id,
            role=role,
            participants=result.participants,
            sources=result.sources,
            ice_servers=self._ice_servers,
            meeting=self._meeting.describe(),
            rejoin_key=self._member.rejoin_key,
        ))
        await self._meeting.state_changed(self._member)
        self._pump = asyncio.ensure_future(self._pump_events(result.events))

    async def _room_message(self, message: RoomMessage, request_id: Any) -> None:
        meeting, member = self._meeting, self._member
        if meeting is None or member is None:
            raise ProtocolError("not_joined", "send 'join' first", request_id)
        rate = self._chat_rate if isinstance(message, Chat) else self._room_rate
        if not rate.allow():
            raise ProtocolError("slow_down", "too many messages: wait a few seconds", request_id)
        if isinstance(message, Chat):
            await meeting.broadcast({"type": "chat", "participant_id": member.participant_id,
                                     "name": member.name, "text": message.text,
                                     "ts": int(time.time() * 1000)})
        elif isinstance(message, SetState):
            for flag in ("mic", "cam", "hand", "screen"):
                value = getattr(message, flag)
                if value is not None:
                    setattr(member, flag, value)
            await meeting.state_changed(member)
        else:
            if member.role != "host":
                raise ProtocolError("forbidden", "only a host may do this", request_id)
            await self._host_command(meeting, member, message, request_id)
        if request_id is not None:
            await self._send(_reply("ok", request_id))

    async def _host_command(self, meeting: Meeting, host: Member, command: HostCommand,
                            request_id: Any) -> None:
        by = {"by": host.name}
        if isinstance(command, LectureMode):
            meeting.lecture = command.enabled
            await meeting.broadcast({"type": "lecture", "enabled": command.enabled, **by})
            meeting.refresh_all()
            return
        if isinstance(command, MuteAll | LowerHands | LockRoom):
            if isinstance(command, LockRoom):
                meeting.locked = command.locked
                await meeting.broadcast({"type": "room_locked", "locked": command.locked, **by})
                return
            for other in list(meeting.members.values()):
                if isinstance(command, LowerHands) and other.hand:
                    other.hand = False
                    await meeting.state_changed(other)
                elif isinstance(command, MuteAll) and other.role != "host" and other.mic:
                    other.mic = False
                    await other.send({"type": "muted", **by})
                    await meeting.state_changed(other)
            return
        target = meeting.members.get(command.participant_id)
        if target is None:
            raise ProtocolError("unknown_participant", "no such participant in this room",
                                request_id)
        if isinstance(command, Mute):
            target.mic = False
            await target.send({"type": "muted", **by})
            await meeting.state_changed(target)
        elif isinstance(command, SetPresenter):
            target.presenter = command.presenter
            await meeting.state_changed(target)
            meeting.refresh_all()
        elif isinstance(command, AskUnmute):
            await target.send({"type": "unmute_requested", **by})
        elif isinstance(command, RemoveParticipant) and target.remove is not None:
            target.rejoin_key = ""  # removed: no way back in through a rejoin
            await target.remove(host.name)

    def _note_sources(self, sources: list[dict[str, Any]]) -> None:
        for source in sources:
            if source.get("kind") == "video":
                self._video_of[str(source.get("id"))] = str(source.get("participant_id"))

    def _apply_constraints(self) -> None:
        """Forwards the client's constraints to the SFU, with the videos of those who
        may not publish now (lecture mode) hidden: enforced here, whatever the
        publisher's client does."""
        meeting, participant_id = self._meeting, self._participant_id
        if participant_id is None:
            return
        silenced = meeting.silenced() if meeting is not None else set()
        sources = dict(self._constraints)
        for source_id, publisher in self._video_of.items():
            if publisher in silenced:
                sources[source_id] = SourceConstraints(visible=False)
        with contextlib.suppress(SfuError):
            self._sfu.set_constraints(participant_id, sources, list(sources))

    async def _removed(self, by: str) -> None:
        """A host removed this participant: say so, leave the SFU, close the socket."""
        await self._send({"type": "removed", "by": by})
        self._closing = True
        await self._exit_meeting()
        if self._participant_id is not None:
            participant_id, self._participant_id = self._participant_id, None
            await self._sfu.leave(participant_id)
        await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"removed by the host")

    async def _exit_meeting(self) -> None:
        if self._meeting is not None and self._member is not None:
            self._meetings.exit(self._meeting.room, self._member.participant_id)
        self._meeting = self._member = None

    async def _pump_events(self, events: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await events.get()
            if event.get("type") == "source_added":
                self._note_sources([event.get("source", {})])
            elif event.get("type") == "source_removed":
                self._video_of.pop(str(event.get("source_id")), None)
            await self._send(event)
            if event.get("type") == "left":
                self._closing = True
                await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"connection failed")
                return

    async def _reject(self, error: ProtocolError) -> None:
        await self._send(error_message(error.code, error.message, error.request_id))
        now = time.monotonic()
        self._invalid_frames.append(now)
        while self._invalid_frames and now - self._invalid_frames[0] > INVALID_FRAME_WINDOW:
            self._invalid_frames.popleft()
        if len(self._invalid_frames) > INVALID_FRAME_LIMIT:
            await self._send(error_message("rate_limited", "too many invalid messages"))
            self._closing = True
            await self._ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"rate limited")

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._ws.send_json(message)

    async def _finish(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        await self._exit_meeting()
        if self._participant_id is not None:
            participant_id, self._participant_id = self._participant_id, None
            await self._sfu.leave(participant_id)
        if not self._ws.closed and self.handoff is None:
            await self._ws.close()


def _reply(kind: str, request_id: Any, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {"type": kind}
    if request_id is not None:
        message["id"] = request_id
    message.update(fields)
    return message


def _request_id(frame: str) -> Any:
    """The id of an already-validated frame, for errors raised after validation."""
    try:
        return parse_frame(frame).request_id
    except ProtocolError:
        return None
