"""The WebSocket relay from the node a participant reached to the node hosting the room.

After the hosting node is known, the participant's frames go upstream as they
are (starting with the ``join`` frame that revealed the room) and the hosting
node's frames come back the same way, so the browser and the test peers need
no change. Only signaling passes here: the SDP answers carry the hosting
node's ICE candidates, so media flows directly between the participant and
that node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

logger = logging.getLogger(__name__)

HOP_HEADER = "X-Visio-Proxied-By"  # set on relayed sockets: the hosting node never relays again
# Close codes that describe a connection lost without a close frame (RFC 6455 §7.4.1):
# never sent in one, so a relay that lost its hosting node says "going away" instead.
UNSENDABLE_CLOSE_CODES = frozenset({1005, 1006, 1015})
CONNECT_TIMEOUT = 3.0  # seconds to reach the hosting node before it counts as unreachable


def client_session() -> aiohttp.ClientSession:
    """One per node, shared by its relays: bounded connect, no bound on a socket's life."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None,
                                                               connect=CONNECT_TIMEOUT))


def upstream_ws_url(base_url: str) -> str:
    return base_url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://",
                                                                       1) + "/ws"


async def relay(client: web.WebSocketResponse, request: web.Request,
                http: aiohttp.ClientSession, url: str, first_frame: str, node_id: str) -> bool:
    """Pipes ``client`` to the node at ``url`` until either side closes.

    Returns False, with ``client`` untouched, if the hosting node cannot be
    reached (it may just have died: the caller places the room again). A node
    that answers but refuses the socket (e.g. 429, its rate limit) is alive: the
    client is told to try again later (close code 1013).
    """
    # The client's address as this node resolved it (signaling/proxies.py): believed by the
    # hosting node when this node is among its --trusted-proxy networks, so that its rate
    # limits count clients, not nodes.
    headers = {HOP_HEADER: node_id, "X-Forwarded-For": request.remote or ""}
    try:
        upstream = await http.ws_connect(upstream_ws_url(url), headers=headers,
                                         max_msg_size=0, heartbeat=20)
    except aiohttp.WSServerHandshakeError as exc:
        logger.warning("hosting node %s refused a relayed socket: HTTP %s", url, exc.status)
        await client.close(code=WSCloseCode.TRY_AGAIN_LATER,
                           message=f"the hosting node answered {exc.status}".encode())
        return True
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        logger.warning("hosting node %s unreachable: %s", url, exc)
        return False
    try:
        await upstream.send_str(first_frame)
        down = asyncio.ensure_future(_pipe_down(upstream, client))
        up = asyncio.ensure_future(_pipe_up(client, upstream))
        await asyncio.wait((down, up), return_when=asyncio.FIRST_COMPLETED)
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)
    finally:
        code = upstream.close_code
        await upstream.close()
        if code is None or code in UNSENDABLE_CLOSE_CODES:
            code = WSCloseCode.GOING_AWAY
        if not client.closed:
            await client.close(code=code,
                               message=b"the hosting node closed the connection")
    return True


async def _pipe_down(upstream: aiohttp.ClientWebSocketResponse,
                     client: web.WebSocketResponse) -> None:
    async for frame in upstream:
        if frame.type != WSMsgType.TEXT or client.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.send_str(frame.data)


async def _pipe_up(client: web.WebSocketResponse,
                   upstream: aiohttp.ClientWebSocketResponse) -> None:
    async for frame in client:
        if frame.type == WSMsgType.TEXT:
            await upstream.send_str(frame.data)
        elif frame.type == WSMsgType.BINARY:
            await upstream.send_bytes(frame.data)  # the hosting node answers bad_json
        else:
            return
