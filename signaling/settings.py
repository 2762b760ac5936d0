"""Server settings from command-line flags, with environment variables as defaults."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfu.aiortc_bridge import IceSettings


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
                             "default: the announced address if it is loopback, else 0.0.0.0)")
    parser.add_argument("--ice-server", action="append", dest="ice_servers",
                        default=_env_list("VISIO_ICE_SERVERS"), metavar="URL",
                        help="STUN/TURN URL handed to browsers, repeatable "
                             "(env VISIO_ICE_SERVERS, comma separated)")
    parser.add_argument("--turn-username", default=env("VISIO_TURN_USERNAME"),
                        help="username for the turn: URLs (env VISIO_TURN_USERNAME)")
    parser.add_argument("--turn-credential", default=env("VISIO_TURN_CREDENTIAL"),
                        help="credential for the turn: URLs (env VISIO_TURN_CREDENTIAL)")
    parser.add_argument("--max-participants", type=int,
                        default=int(env("VISIO_MAX_PARTICIPANTS", "100")),
                        help="participants per room (env VISIO_MAX_PARTICIPANTS, default 100)")


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def settings_from_arguments(args: argparse.Namespace) -> Settings:
    announce = args.ice_announce
    bind = args.ice_bind or (announce if IceSettings(announce, announce).loopback else "0.0.0.0")
    return Settings(
        host=args.host,
        port=args.port,
        ice=IceSettings(bind_address=bind, announced_address=announce),
        ice_servers=browser_ice_servers(args.ice_servers, args.turn_username,
                                        args.turn_credential),
        max_participants_per_room=args.max_participants,
    )


def browser_ice_servers(urls: list[str], username: str | None,
                        credential: str | None) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries for the browser: STUN URLs plain, TURN URLs with credentials."""
    stun = [u for u in urls if u.startswith("stun:") or u.startswith("stuns:")]
    turn = [u for u in urls if u.startswith("turn:") or u.startswith("turns:")]
    unknown = [u for u in urls if u not in stun and u not in turn]
    if unknown:
        raise ValueError(f"ICE server URLs must start with stun:, stuns:, turn: or turns: "
                         f"({json.dumps(unknown)})")
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn:
        if not username or not credential:
            raise ValueError("turn: URLs need --turn-username and --turn-credential")
        servers.append({"urls": turn, "username": username, "credential": credential})
    return servers
