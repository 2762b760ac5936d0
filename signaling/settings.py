"""Server settings from command-line flags, with environment variables as defaults."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfu.aiortc_bridge import IceSettings
from signaling.cluster.config import ClusterSettings
from signaling.ratelimit import RateLimitSettings, parse_rate
from signaling.turn import DEFAULT_TTL


def _web_client_dir() -> Path:
    """The web client's files: from the installed distribution, or the checkout."""
    override = os.environ.get("VISIO_WEB_CLIENT_DIR")
    if override:
        return Path(override)
    try:
        spec = importlib.util.find_spec("visio_web_client")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "web-client"


WEB_CLIENT_DIR = _web_client_dir()


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    ice: IceSettings = field(default_factory=IceSettings)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    max_participants_per_room: int = 100
    web_client_dir: Path = WEB_CLIENT_DIR
    # Booking side (signaling/booking): where data lives, how join tokens are signed.
    development: bool = True  # joins without a token are accepted (loopback default)
    data_dir: Path = Path("data")
    database_url: str | None = None  # None: SQLite file data_dir/visio.sqlite3
    secret_key: str | None = None  # None: development only, generated into data_dir
    public_url: str | None = None  # base of the links in bookings; None: from the request
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    # HTTPS (signaling/tls.py) and the reverse proxies whose X-Forwarded-* headers count.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # TURN REST API (signaling/turn.py): per-socket credentials from a secret shared with coturn.
    turn_secret: str | None = None
    turn_ttl: int = DEFAULT_TTL
    # SFU worker processes (signaling/workers.py); 0 runs the SFU in this process.
    workers: int = 0
    room_participants_per_worker: int = 30  # then a room spans one more worker
    # Several nodes coordinated through Redis (signaling/cluster); None: a single node.
    cluster: ClusterSettings | None = None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--host", default=env("VISIO_HOST", "127.0.0.1"),
                        help="HTTP listen address (env VISIO_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(env("VISIO_PORT", "8080")),
                        help="HTTP listen port (env VISIO_PORT, default 8080)")
    parser.add_argument("--ice-announce", default=env("VISIO_ICE_ANNOUNCE", "127.0.0.1"),
                        help="address put in the SFU's ICE candidates: 127.0.0.1 for local "
                             "use, the public IP behind 1:1 NAT in production "
                             "(env VISIO_ICE_ANNOUNCE)")
    parser.add_argument("--ice-bind", default=env("VISIO_ICE_BIND"),
                        help="address the SFU's media sockets bind (env VISIO_ICE_BIND; "
                             "default: the announced address if it is loopback, "
                             "else 0.0.0.0 or ::)")
    parser.add_argument("--ice-server", action="append", dest="ice_servers", default=None,
                        metavar="URL",
                        help="STUN/TURN URL handed to browsers, repeatable; replaces "
                             "VISIO_ICE_SERVERS (comma separated) when given")
    parser.add_argument("--turn-username", default=env("VISIO_TURN_USERNAME"),
                        help="username for the turn: URLs (env VISIO_TURN_USERNAME)")
    parser.add_argument("--turn-credential", default=env("VISIO_TURN_CREDENTIAL"),
                        help="credential for the turn: URLs (env VISIO_TURN_CREDENTIAL)")
    parser.add_argument("--turn-secret", default=env("VISIO_TURN_SECRET"),
                        help="secret shared with the TURN server (coturn static-auth-secret): "
                             "each socket gets credentials valid for --turn-ttl seconds, "
                             "instead of --turn-username/--turn-credential "
                             "(env VISIO_TURN_SECRET)")
    parser.add_argument("--turn-ttl", type=int, default=int(env("VISIO_TURN_TTL",
                                                                str(DEFAULT_TTL))),
                        help=f"lifetime of those TURN credentials in seconds "
                             f"(env VISIO_TURN_TTL, default {DEFAULT_TTL})")
    parser.add_argument("--max-participants", type=int,
                        default=int(env("VISIO_MAX_PARTICIPANTS", "100")),
                        help="participants per room (env VISIO_MAX_PARTICIPANTS, default 100)")
    parser.add_argument("--tls-cert", type=Path, default=env("VISIO_TLS_CERT"),
                        help="certificate chain (PEM): serve HTTPS and WSS; reloaded on SIGHUP "
                             "and when the file changes (env VISIO_TLS_CERT)")
    parser.add_argument("--tls-key", type=Path, default=env("VISIO_TLS_KEY"),
                        help="private key (PEM) of --tls-cert (env VISIO_TLS_KEY)")
    parser.add_argument("--trusted-proxy", action="append", dest="trusted_proxies",
                        default=None, metavar="CIDR",
                        help="reverse proxy address or network whose X-Forwarded-For and "
                             "X-Forwarded-Proto are believed, repeatable; replaces "
                             "VISIO_TRUSTED_PROXIES (comma separated) when given")
    parser.add_argument("--workers", type=int, default=_int_env("VISIO_WORKERS"),
                        help="SFU worker processes, one per core; 0 runs the SFU inside the "
                             "signaling process (env VISIO_WORKERS, default: the number of "
                             "cores)")
    parser.add_argument("--room-participants-per-worker", type=int,
                        default=int(env("VISIO_ROOM_PARTICIPANTS_PER_WORKER", "30")),
                        help="participants of one room a worker serves before the room "
                             "spans another worker (env VISIO_ROOM_PARTICIPANTS_PER_WORKER, "
                             "default 30; 0: never spread)")
    add_rate_limit_arguments(parser)
    add_storage_arguments(parser)
    add_cluster_arguments(parser)
    parser.add_argument("--mode", choices=["development", "production"], default=env("VISIO_MODE"),
                        help="development accepts joins without a booking token "
                             "(env VISIO_MODE; default: development when --host is loopback, "
                             "else production)")
    parser.add_argument("--public-url", default=env("VISIO_PUBLIC_URL"),
                        help="base URL of the meeting links in bookings, e.g. "
                             "https://visio.example.org (env VISIO_PUBLIC_URL; default: the "
                             "address the booking page was requested at)")


def add_rate_limit_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    defaults = RateLimitSettings()
    for scope, default, what in (
            ("connects", defaults.connect, "WebSocket connections (so joins) to /ws"),
            ("api", defaults.api, "REST API calls under /api/v1/"),
            ("logins", defaults.login, "POST /booking/login attempts")):
        name = f"VISIO_RATE_LIMIT_{scope.upper()}"
        parser.add_argument(f"--rate-limit-{scope}", default=env(name, str(default)),
                            metavar="COUNT/PERIOD",
                            help=f"{what} per client address, e.g. 120/min, 10/s or off "
                                 f"(env {name}, default {default})")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Several nodes (docs/deployment.md): without --redis-url the node stands alone."""
    env = os.environ.get
    parser.add_argument("--redis-url", default=env("VISIO_REDIS_URL"),
                        help="Redis shared by the nodes of a cluster, e.g. redis://redis:6379/0 "
                             "(env VISIO_REDIS_URL; default: none, a single node)")
    parser.add_argument("--node-id", default=env("VISIO_NODE_ID"),
                        help="this node's unique name in the cluster (env VISIO_NODE_ID; "
                             "default: host name and port)")
    parser.add_argument("--advertise-url", default=env("VISIO_ADVERTISE_URL"),
                        help="base URL the other nodes reach this node at, e.g. "
                             "http://10.0.0.5:8080 (env VISIO_ADVERTISE_URL; default: "
                             "--host and --port)")


def cluster_settings(args: argparse.Namespace) -> ClusterSettings | None:
    if not args.redis_url:
        return None
    scheme = "https" if args.tls_cert else "http"
    host = args.host if args.host not in ("0.0.0.0", "::", "") else socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return ClusterSettings(
        redis_url=args.redis_url,
        node_id=args.node_id or f"{socket.gethostname()}-{args.port}",
        advertise_url=(args.advertise_url or f"{scheme}://{host}:{args.port}").rstrip("/"))


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """Where bookings are stored and how tokens are signed (``serve`` and ``admin``)."""
    env = os.environ.get
    parser.add_argument("--data-dir", type=Path, default=Path(env("VISIO_DATA_DIR", "data")),
                        help="directory of the SQLite database and the development secret "
                             "(env VISIO_DATA_DIR, default ./data)")
    parser.add_argument("--database-url", default=env("VISIO_DATABASE_URL"),
                        help="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@host/visio "
                             "(env VISIO_DATABASE_URL; default: SQLite in the data directory)")
    parser.add_argument("--secret-key", default=env("VISIO_SECRET_KEY"),
                        help="key signing join tokens and session cookies (env "
                             "VISIO_SECRET_KEY; required in production mode)")


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _default_bind(announce: str) -> str:
    """Bind where we announce on loopback; else the wildcard of the announced address's family."""
    address = ipaddress.ip_address(announce)
    if address.is_loopback:
        return announce
    return "::" if address.version == 6 else "0.0.0.0"


def settings_from_arguments(args: argparse.Namespace) -> Settings:
    announce = args.ice_announce
    bind = args.ice_bind or _default_bind(announce)
    settings = Settings(
        host=args.host,
        port=args.port,
        ice=IceSettings(bind_address=bind, announced_address=announce),
        ice_servers=browser_ice_servers(
            args.ice_servers if args.ice_servers is not None else _env_list("VISIO_ICE_SERVERS"),
            args.turn_username, args.turn_credential, time_limited=bool(args.turn_secret)),
        turn_secret=args.turn_secret or None,
        turn_ttl=args.turn_ttl,
        max_participants_per_room=args.max_participants,
        workers=args.workers if args.workers is not None else _cores(),
        room_participants_per_worker=args.room_participants_per_worker,
        development=_development(args.mode, args.host),
        data_dir=args.data_dir,
        database_url=args.database_url or None,
        secret_key=args.secret_key or None,
        public_url=(args.public_url or "").rstrip("/") or None,
        rate_limits=RateLimitSettings(connect=parse_rate(args.rate_limit_connects),
                                      api=parse_rate(args.rate_limit_api),
                                      login=parse_rate(args.rate_limit_logins)),
        tls_cert=_path_or_none(args.tls_cert),
        tls_key=_path_or_none(args.tls_key),
        trusted_proxies=_networks(args.trusted_proxies if args.trusted_proxies is not None
                                  else _env_list("VISIO_TRUSTED_PROXIES")),
        cluster=cluster_settings(args),
    )
    if settings.workers < 0 or settings.room_participants_per_worker < 0:
        raise ValueError("--workers and --room-participants-per-worker cannot be negative")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together")
    return settings


def _path_or_none(value: Path | str | None) -> Path | None:
    return Path(value) if value else None


def _networks(items: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items)
    except ValueError as exc:
        raise ValueError(f"--trusted-proxy: {exc}") from None


def _development(mode: str | None, host: str) -> bool:
    if mode is not None:
        return mode == "development"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def browser_ice_servers(urls: list[str], username: str | None, credential: str | None,
                        time_limited: bool = False) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for the browser: STUN URLs plain, TURN URLs with credentials.

    With ``time_limited`` (a TURN shared secret) the TURN entry gets fresh
    credentials per socket (signaling/turn.py) instead of static ones.
    """
    stun = [u for u in urls if u.startswith("stun:") or u.startswith("stuns:")]
    turn = [u for u in urls if u.startswith("turn:") or u.startswith("turns:")]
    unknown = [u for u in urls if u not in stun and u not in turn]
    if unknown:
        raise ValueError(f"ICE server URLs must start with stun:, stuns:, turn: or turns: "
                         f"({json.dumps(unknown)})")
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn and time_limited:
        servers.append({"urls": turn})
    elif turn:
        if not username or not credential:
            raise ValueError("turn: URLs need --turn-secret, or --turn-username and "
                             "--turn-credential")
        servers.append({"urls": turn, "username": username, "credential": credential})
    return servers
