"""The cluster inside the aiohttp app: start/stop with it, and each ``/ws`` socket's route.

A socket is served by an ordinary signaling session until its ``join`` names
a room hosted elsewhere; then the session hands the socket over and it is
relayed to the hosting node (proxy.py). If that node cannot be reached it has
probably just died: once its registry entry has expired the join is replayed
here, where the room is now claimed (or found on its new owner).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import WSCloseCode, web

from signaling.cluster.config import ClusterSettings
from signaling.cluster.metrics import CLUSTER_KEY
from signaling.cluster.node import ClusterNode
from signaling.cluster.placement import Handoff, Placement
from signaling.cluster.proxy import HOP_HEADER, client_session, relay
from signaling.meeting import MeetingRegistry
from signaling.observability import READINESS_KEY

logger = logging.getLogger(__name__)

HTTP_KEY = web.AppKey("cluster_http", aiohttp.ClientSession)
MAX_PLACEMENTS = 3  # join attempts on one socket (an owner that just died costs one)


class HandingSession(Protocol):
    """What serve_socket needs of signaling/session.py's SignalingSession."""

    handoff: Handoff | None

    async def run(self, first: str | None = None) -> None: ...


class NodePlacement:
    """The Placement a session on this node uses."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    async def place(self, room: str) -> None:
        await self._node.route(room)


def install_cluster(app: web.Application, settings: ClusterSettings, meetings: MeetingRegistry,
                    sockets: set[web.WebSocketResponse]) -> ClusterNode:
    """Joins the cluster when the app starts, leaves it when the app stops."""

    def hosted() -> dict[str, int]:
        return {room: len(m.members) for room, m in meetings.meetings.items()}

    async def broadcast(room: str, message: dict[str, Any]) -> None:
        meeting = meetings.get(room)
        if meeting is not None:
            await meeting.broadcast(message)

    async def close_room(room: str, reason: str) -> int:
        targets = [ws for ws in sockets if getattr(ws, "room", None) == room]
        for ws in targets:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode()[:120])
        return len(targets)

    def drained() -> None:  # load balancers stop sending new sockets here
        if READINESS_KEY in app:
            app[READINESS_KEY].problem = "draining: no new rooms on this node"

    node = app[CLUSTER_KEY] = ClusterNode(settings, hosted, broadcast, close_room,
                                          on_drain=drained)

    async def connect(app: web.Application) -> None:
        await node.connect()  # first of all: no worker is started if Redis is away

    async def start(app: web.Application) -> None:  # last: just before the node listens
        app[HTTP_KEY] = client_session()
        await node.start()

    async def stop(app: web.Application) -> None:
        await node.stop()
        await app[HTTP_KEY].close()

    app.on_startup.insert(0, connect)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return node


async def serve_socket(app: web.Application, ws: web.WebSocketResponse, request: web.Request,
                       new_session: Callable[[Placement | None], HandingSession]) -> None:
    """Serves one ``/ws`` socket on a cluster node: here, or relayed to the room's node."""
    node = app[CLUSTER_KEY]
    proxied = HOP_HEADER in request.headers
    first: str | None = None
    for _ in range(MAX_PLACEMENTS):
        session = new_session(NodePlacement(node))
        await session.run(first)
        handoff = session.handoff
        if handoff is None:
            return
        if proxied:  # placement changed between the two nodes' decisions: the client retries
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"room moved: reconnect")
            return
        logger.info("relaying a socket for room %s to node %s", handoff.where.room,
                    handoff.where.owner)
        node.counters.relays_total += 1
        node.counters.relays_open += 1
        try:
            reached = await relay(ws, request, app[HTTP_KEY], handoff.where.url, handoff.frame,
                                  node.node_id)
        finally:
            node.counters.relays_open -= 1
        if reached:
            return
        node.counters.relays_failed += 1
        await node.wait_until_gone(handoff.where.owner)
        first = handoff.frame
    await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"room unavailable: reconnect")
