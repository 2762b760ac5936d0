"""The worker IPC framing (sfu/ipc.py): length-prefixed JSON over a real Unix socketpair."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sfu.errors import RoomFull, SfuError
from sfu.ipc import HEADER, IpcError, encode, error_reply, raise_error, read_message

WRITERS: list[asyncio.StreamWriter] = []  # a collected writer would close the stream


async def pair() -> tuple[asyncio.StreamReader, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    WRITERS.append(writer)
    return reader, theirs


async def test_messages_arrive_whole_and_in_order_even_when_split() -> None:
    reader, peer = await pair()
    data = encode({"id": 1, "method": "join", "params": {"room": "é", "name": "x" * 70_000}})
    data += encode({"event": {"type": "left"}, "participant_id": "p-1"})
    for start in range(0, len(data), 4096):  # the stream delivers arbitrary chunks
        peer.sendall(data[start:start + 4096])
    first = await read_message(reader)
    assert first["params"]["room"] == "é" and len(first["params"]["name"]) == 70_000
    assert await read_message(reader) == {"event": {"type": "left"}, "participant_id": "p-1"}
    peer.close()
    with pytest.raises(asyncio.IncompleteReadError):
        await read_message(reader)


@pytest.mark.parametrize("frame", [HEADER.pack(1 << 30), HEADER.pack(4) + b"nope",
                                   HEADER.pack(2) + b"[]"])
async def test_broken_framing_is_a_typed_error(frame: bytes) -> None:
    reader, peer = await pair()
    peer.sendall(frame)
    with pytest.raises(IpcError):
        await read_message(reader)
    peer.close()


def test_sfu_refusals_keep_their_class_across_the_link() -> None:
    reply = error_reply(3, RoomFull("room r already has 2 participants"))
    assert reply == {"id": 3, "error": {"code": "room_full",
                                        "message": "room r already has 2 participants"}}
    with pytest.raises(RoomFull, match="already has 2"):
        raise_error(reply["error"])
    unexpected = error_reply(4, KeyError("participant_id"))
    assert unexpected["error"]["code"] == "internal"
    with pytest.raises(SfuError):
        raise_error(unexpected["error"])
