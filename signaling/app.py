"""The aiohttp application: WebSocket signaling, health and stats, and the web client."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from aiohttp import web

from sfu import SfuApi, SfuService, SfuSettings
from signaling.booking.context import BOOKING_KEY
from signaling.booking.setup import install_booking
from signaling.cluster.frontdoor import install_cluster, serve_socket
from signaling.cluster.metrics import CLUSTER_KEY
from signaling.cluster.placement import Placement
from signaling.logs import Connection, connection
from signaling.meeting import registry_for
from signaling.observability import install_observability
from signaling.protocol import MAX_FRAME_BYTES
from signaling.proxies import install_trusted_proxies
from signaling.ratelimit import install_rate_limits
from signaling.security import install_security_headers
from signaling.session import SignalingSession
from signaling.settings import Settings
from signaling.turn import with_turn_credentials
from signaling.worker_admin import install_worker_admin
from signaling.workers import PoolSettings, WorkerPool

logger = logging.getLogger(__name__)

SFU_KEY = web.AppKey("sfu", SfuApi)
SETTINGS_KEY = web.AppKey("settings", Settings)
SOCKETS_KEY = web.AppKey("sockets", set[web.WebSocketResponse])


def create_app(settings: Settings) -> web.Application:
    SfuService.check_environment()
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[SFU_KEY] = _media_plane(app, settings)
    app[SOCKETS_KEY] = set()
    install_security_headers(app)  # CSP, frame-ancestors, no-referrer, nosniff, HSTS on HTTPS
    install_rate_limits(app, settings.rate_limits)  # per address: /ws, /api/v1/, logins
    install_trusted_proxies(app, settings.trusted_proxies)  # outermost: X-Forwarded-For/Proto
    app.router.add_get("/healthz", healthz)
    install_observability(app, app[SFU_KEY], app[SOCKETS_KEY])  # /metrics, /readyz
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/ws", websocket)
    install_booking(app, settings)  # /booking/ pages, /api/v1/ REST API, join tokens
    if settings.cluster is not None:  # several nodes through Redis (signaling/cluster)
        install_cluster(app, settings.cluster, registry_for(app[SFU_KEY]), app[SOCKETS_KEY])
    app.router.add_get("/", index)
    app.router.add_static("/", settings.web_client_dir, show_index=False)
    app.on_shutdown.append(_close_everything)
    return app


def _media_plane(app: web.Application, settings: Settings) -> SfuApi:
    """The SFU in this process (``--workers 0``), or a pool of worker processes."""
    if settings.workers <= 0:
        return SfuService(SfuSettings(ice=settings.ice,
                                      max_participants_per_room=settings.max_participants_per_room))
    pool = WorkerPool(PoolSettings(
        workers=settings.workers, ice=settings.ice,
        max_participants_per_room=settings.max_participants_per_room,
        room_participants_per_worker=settings.room_participants_per_worker,
        log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel())))

    async def start(app: web.Application) -> None:
        await pool.start()

    app.on_startup.append(start)
    install_worker_admin(app, pool)  # POST/DELETE /api/workers/{n}/drain, from loopback
    return pool


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.app[SFU_KEY].current_stats()
    body["decoder_threads"] = body.get("decoder_threads", 0) + sum(
        1 for t in threading.enumerate() if t.name.endswith("-decoder"))
    body["threads"] = threading.active_count()
    return web.json_response(body)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[SETTINGS_KEY].web_client_dir / "index.html")


class SignalingSocket(web.WebSocketResponse):
    """The signaling WebSocket; remembers the room and participant its ``joined`` reply named,
    so that log lines (signaling/logs.py) carry those ids."""

    room: str | None = None
    participant_id: str | None = None

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(data, dict) and data.get("type") == "joined":
            self.room, self.participant_id = data.get("room"), data.get("participant_id")
            logger.info("participant %s joined room %s", self.participant_id, self.room)
        await super().send_json(data, *args, **kwargs)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = SignalingSocket(max_msg_size=MAX_FRAME_BYTES, heartbeat=20)
    await ws.prepare(request)
    sockets = request.app[SOCKETS_KEY]
    sockets.add(ws)
    connection.set(Connection(remote=request.remote, participant=lambda: ws.participant_id,
                              room=lambda: ws.room))
    opened = time.monotonic()
    try:
        settings = request.app[SETTINGS_KEY]
        ice_servers = with_turn_credentials(settings.ice_servers, settings.turn_secret,
                                            settings.turn_ttl)

        def new_session(placement: Placement | None) -> SignalingSession:
            return SignalingSession(ws, request.app[SFU_KEY], ice_servers,
                                    request.app[BOOKING_KEY].gate, placement=placement)

        if CLUSTER_KEY in request.app:  # the room may be hosted by another node
            await serve_socket(request.app, ws, request, new_session)
        else:
            await new_session(None).run()
    finally:
        sockets.discard(ws)
        if ws.participant_id is not None:
            logger.info("participant %s left room %s after %.0f s", ws.participant_id, ws.room,
                        time.monotonic() - opened)
    return ws


async def _close_everything(app: web.Application) -> None:
    sockets = app[SOCKETS_KEY]
    for ws in [*sockets]:
        await ws.close(message=b"server shutdown")
    await app[SFU_KEY].close()
