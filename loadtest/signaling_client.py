"""A client of visio's signaling protocol v1 (docs/protocol.md), for tests and load tests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp


class SignalingError(Exception):
    """The server answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignalingClient:
    """One WebSocket to the server: requests with ids, and a queue of everything else."""

    def __init__(self, base_url: str) -> None:
        self._url = base_url.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self._url, max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                message = frame.json()
                waiter = self._pending.pop(message.get("id"), None) if "id" in message else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                else:
                    self.events.put_nowait(message)
        finally:
            self.closed.set()
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("signaling socket closed"))

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_json(message)

    async def send_raw(self, frame: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(frame)

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send ``message`` with a fresh id and return the reply; raise on an error reply."""
        request_id = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        await self.send({**message, "id": request_id})
        reply = await asyncio.wait_for(waiter, timeout)
        if reply.get("type") == "error":
            raise SignalingError(reply.get("code", "?"), reply.get("message", ""))
        return reply

    async def next_event(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next queued event of type ``kind``; other events are skipped."""
        async def wait() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event.get("type") == kind:
                    return event
        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
