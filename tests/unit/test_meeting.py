"""Room features and host controls over the real WebSocket of a development server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from signaling.meeting import RateWindow
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
               name: str) -> Client:
    client = Client(await session.ws_connect(server.base_url.rstrip("/") + "/ws"))
    await client.send(type="join", v=1, id=1, room=room, name=name)
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
                    "lower_hands"}
    seen = set()
    for block in re.findall(r"```json\n(.*?)\n```", section, re.S):
        for line in block.replace("\n ", " ").splitlines():
            message = json.loads(line)
            server_chat = message["type"] == "chat" and "name" in message  # the broadcast
            if message["type"] in client_kinds and not server_chat:
                parse_frame(json.dumps(message))
                seen.add(message["type"])
    assert seen == client_kinds
