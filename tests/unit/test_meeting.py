"""Room features and host controls over the real WebSocket of a development server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from signaling.meeting import REJOIN_WINDOW, Meeting, Member, RateWindow, offers_video
from signaling.protocol import ProtocolError, parse_frame
from tests.conftest import ServerProcess


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.joined: dict[str, Any] = {}

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    async def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """The next message of type ``kind`` whose fields match (others are skipped)."""
        async with asyncio.timeout(5):
            while True:
                frame = await self.ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket closed waiting for {kind}")
                message: dict[str, Any] = frame.json()
                if message["type"] == kind and all(message.get(k) == v
                                                   for k, v in fields.items()):
                    return message

    @property
    def id(self) -> str:
        return str(self.joined["participant_id"])


async def join(session: aiohttp.ClientSession, server: ServerProcess, room: str,
               name: str, **extra: Any) -> Client:
    client = Client(await session.ws_connect(server.base_url.rstrip("/") + "/ws"))
    await client.send(type="join", v=1, id=1, room=room, name=name, **extra)
    client.joined = await client.expect("joined")
    return client


async def test_state_chat_and_host_controls(visio_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        host = await join(http, visio_server, "classe", "Mme Martin")
        assert host.joined["role"] == "host"  # first in the room, no token: host
        pupil = await join(http, visio_server, "classe", "Léo")
        other = await join(http, visio_server, "classe", "Inès")
        assert pupil.joined["role"] == "participant"
        names = [p["name"] for p in other.joined["meeting"]["participants"]]
        assert names == ["Mme Martin", "Léo", "Inès"]

        await pupil.send(type="set_state", hand=True, mic=False)
        state = await host.expect("participant_state", participant_id=pupil.id, hand=True)
        assert state["hand"] is True and state["mic"] is False and state["cam"] is True

        await pupil.send(type="chat", text="  Bonjour <b>!</b>  ")
        chat = await other.expect("chat")
        assert chat["text"] == "Bonjour <b>!</b>" and chat["name"] == "Léo"

        await pupil.send(type="mute", id=7, participant_id=host.id)
        error = await pupil.expect("error", id=7)
        assert error["code"] == "forbidden"

        await host.send(type="mute", participant_id=other.id)
        assert (await other.expect("muted"))["by"] == "Mme Martin"
        await pupil.expect("participant_state", participant_id=other.id, mic=False)

        await host.send(type="lower_hands")
        await other.expect("participant_state", participant_id=pupil.id, hand=False)

        await host.send(type="lock", locked=True)
        await pupil.expect("room_locked", locked=True)
        late = Client(await http.ws_connect(visio_server.base_url.rstrip("/") + "/ws"))
        await late.send(type="join", v=1, id=1, room="classe", name="Tard")
        assert (await late.expect("error"))["code"] == "room_locked"

        await host.send(type="remove", participant_id=pupil.id)
        assert (await pupil.expect("removed"))["by"] == "Mme Martin"
        await other.expect("participant_left", participant_id=pupil.id)
        assert (await pupil.ws.receive()).type in (aiohttp.WSMsgType.CLOSE,
                                                   aiohttp.WSMsgType.CLOSED)
        for client in (host, other, late):
            await client.ws.close()


async def test_chat_is_rate_limited(visio_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        alone = await join(http, visio_server, "bavard", "Zoé")
        for i in range(11):
            await alone.send(type="chat", id=i + 10, text=f"message {i}")
        assert (await alone.expect("error", id=20))["code"] == "slow_down"
        await alone.ws.close()


def test_chat_validation() -> None:
    for text in ("", "   ", "x" * 1001, "bip\x07"):
        try:
            parse_frame(json.dumps({"type": "chat", "text": text}))
        except ProtocolError as exc:
            assert exc.code == "bad_message"
        else:
            raise AssertionError(f"{text!r} accepted")
    assert parse_frame('{"type": "chat", "text": "a\\nb"}').message.text == "a\nb"  # type: ignore[union-attr]


def test_rate_window() -> None:
    window = RateWindow(2, 10.0)
    assert window.allow(0.0) and window.allow(1.0) and not window.allow(5.0)
    assert window.allow(10.5)


def test_documented_room_messages_parse() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    section = text.split("## Room features and host controls", 1)[1]
    client_kinds = {"chat", "set_state", "mute", "mute_all", "ask_unmute", "remove", "lock",
                    "lower_hands", "lecture", "set_presenter"}
    seen = set()
    for block in re.findall(r"```json\n(.*?)\n```", section, re.S):
        for line in block.replace("\n ", " ").splitlines():
            message = json.loads(line)
            # The broadcasts that share a client message's type carry who did it.
            server_copy = message["type"] in ("chat", "lecture") and (
                "name" in message or "by" in message)
            if message["type"] in client_kinds and not server_copy:
                parse_frame(json.dumps(message))
                seen.add(message["type"])
    assert seen == client_kinds


VIDEO_OFFER = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n" \
              "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n"


AUDIO_ONLY_OFFER = VIDEO_OFFER.rsplit("a=sendonly", 1)[0] + "a=inactive\r\n"


def test_offers_video() -> None:
    assert offers_video(VIDEO_OFFER)
    assert offers_video("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n")  # no direction: sendrecv
    assert not offers_video(AUDIO_ONLY_OFFER)  # its video m-line is inactive
    assert not offers_video(VIDEO_OFFER.replace("m=video 9", "m=video 0"))  # rejected m-line
    assert not offers_video(VIDEO_OFFER.rsplit("m=video", 1)[0])


async def test_lecture_mode_only_presenters_publish_video(visio_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        host = await join(http, visio_server, "amphi", "Mme Martin")
        pupil = await join(http, visio_server, "amphi", "Léo")
        await pupil.send(type="lecture", id=2, enabled=True)
        assert (await pupil.expect("error", id=2))["code"] == "forbidden"

        await host.send(type="lecture", id=3, enabled=True)
        assert (await pupil.expect("lecture"))["enabled"] is True
        await host.expect("ok", id=3)
        # A camera from a non-presenter is refused, typed; audio alone passes the check.
        await pupil.send(type="publish_offer", id=4, sdp=VIDEO_OFFER)
        assert (await pupil.expect("error", id=4))["code"] == "not_presenter"
        await pupil.send(type="publish_offer", id=5, sdp=AUDIO_ONLY_OFFER)
        assert (await pupil.expect("error", id=5))["code"] != "not_presenter"
        # The host may always send video (the fake SDP then fails further on).
        await host.send(type="publish_offer", id=6, sdp=VIDEO_OFFER)
        assert (await host.expect("error", id=6))["code"] == "invalid_sdp"

        await host.send(type="set_presenter", id=7, participant_id=pupil.id, presenter=True)
        state = await pupil.expect("participant_state", participant_id=pupil.id)
        assert state["presenter"] is True
        await pupil.send(type="publish_offer", id=8, sdp=VIDEO_OFFER)
        assert (await pupil.expect("error", id=8))["code"] == "invalid_sdp"

        await host.send(type="set_presenter", participant_id=pupil.id, presenter=False)
        await pupil.expect("participant_state", participant_id=pupil.id, presenter=False)
        await pupil.send(type="publish_offer", id=9, sdp=VIDEO_OFFER)
        assert (await pupil.expect("error", id=9))["code"] == "not_presenter"

        await host.send(type="lecture", enabled=False)
        await pupil.expect("lecture", enabled=False)
        await pupil.send(type="publish_offer", id=10, sdp=VIDEO_OFFER)
        assert (await pupil.expect("error", id=10))["code"] == "invalid_sdp"
        late = await join(http, visio_server, "amphi", "Inès")
        assert late.joined["meeting"]["lecture"] is False
        for client in (host, pupil, late):
            await client.ws.close()


async def test_a_reconnecting_host_stays_host(visio_server: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        host = await join(http, visio_server, "retour", "Mme Martin")
        pupil = await join(http, visio_server, "retour", "Léo")
        await host.send(type="set_presenter", participant_id=pupil.id, presenter=True)
        await host.send(type="lock", locked=True)
        await pupil.expect("room_locked", locked=True)
        key = host.joined["rejoin_key"]
        await host.ws.close()
        await pupil.expect("participant_left", participant_id=host.id)

        # Someone else's guess is a participant, and the locked room refuses it.
        guess = Client(await http.ws_connect(visio_server.base_url.rstrip("/") + "/ws"))
        await guess.send(type="join", v=1, id=1, room="retour", name="X", rejoin="nope")
        assert (await guess.expect("error", id=1))["code"] == "room_locked"

        back = await join(http, visio_server, "retour", "Mme Martin", rejoin=key)
        assert back.joined["role"] == "host"
        assert back.joined["rejoin_key"] != key
        # The pupil reconnects too, while its old socket still looks alive: presenter still.
        pupil_back = await join(http, visio_server, "retour", "Léo",
                                rejoin=pupil.joined["rejoin_key"])
        assert pupil_back.joined["role"] == "participant"
        mine = [p for p in pupil_back.joined["meeting"]["participants"]
                if p["participant_id"] == pupil_back.id]
        assert mine[0]["presenter"] is True
        # A key is good once.
        await back.send(type="lock", locked=False)
        await pupil_back.expect("room_locked", locked=False)
        again = await join(http, visio_server, "retour", "Mme Martin", rejoin=key)
        assert again.joined["role"] == "participant"

        # Someone the host removed cannot use its key to get past the lock.
        await back.send(type="remove", participant_id=again.id)
        await again.expect("removed")
        await back.send(type="lock", id=5, locked=True)
        await back.expect("ok", id=5)
        kicked = Client(await http.ws_connect(visio_server.base_url.rstrip("/") + "/ws"))
        await kicked.send(type="join", v=1, id=1, room="retour", name="Mme Martin",
                          rejoin=again.joined["rejoin_key"])
        assert (await kicked.expect("error", id=1))["code"] == "room_locked"
        for client in (back, pupil, pupil_back, again, guess, kicked):
            await client.ws.close()


def test_rejoin_keys_expire() -> None:
    async def send(message: dict[str, Any]) -> None:
        return None

    meeting = Meeting("salle")
    member = Member("p-1", "Mme Martin", "host", send)
    meeting.members[member.participant_id] = member
    assert meeting.redeem(None) is None and meeting.redeem("") is None
    del meeting.members[member.participant_id]
    meeting.departed[member.rejoin_key] = (member, 100.0)
    assert meeting.redeem(member.rejoin_key, now=100.0 + REJOIN_WINDOW + 1) is None
    meeting.departed[member.rejoin_key] = (member, 100.0)
    assert meeting.redeem(member.rejoin_key, now=101.0) is member
    assert meeting.redeem(member.rejoin_key, now=101.0) is None
