"""Draining one SFU worker: the HTTP routes a node offers on loopback, and ``visio workers``.

``POST /api/workers/{n}/drain`` (``?migrate=1``) stops placing participants on
worker n; with ``migrate`` its participants are told to rejoin and move to the
other workers. ``DELETE`` on the same path ends the drain. Only a client on the
node itself (a loopback address, after the trusted-proxy rewrite) may call
them: they change the service, and ``/api/stats`` shows the worker indexes.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import urllib.error
import urllib.request
from typing import Any

from aiohttp import web

from signaling.workers import WorkerPool

DEFAULT_URL = "http://127.0.0.1:8080"


def install_worker_admin(app: web.Application, pool: WorkerPool) -> None:
    async def drain(request: web.Request) -> web.Response:
        index = _index(request)
        if request.method == "DELETE":
            pool.undrain(index)
            return web.json_response({"worker": index, "draining": False})
        try:
            told = pool.drain(index, migrate=request.query.get("migrate") in ("1", "true"))
        except ValueError as exc:
            raise web.HTTPNotFound(text=json.dumps({"error": str(exc)}),
                                   content_type="application/json") from None
        return web.json_response({"worker": index, "draining": True, "told_to_rejoin": told})

    app.router.add_route("POST", r"/api/workers/{index:\d+}/drain", drain)
    app.router.add_route("DELETE", r"/api/workers/{index:\d+}/drain", drain)


def _index(request: web.Request) -> int:
    try:
        local = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        local = False
    if not local:
        raise web.HTTPForbidden(text='{"error": "only from the node itself"}',
                                content_type="application/json")
    return int(request.match_info["index"])


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("VISIO_ADMIN_URL", DEFAULT_URL),
                        help=f"the node, from the node itself (env VISIO_ADMIN_URL, "
                             f"default {DEFAULT_URL})")
    commands = parser.add_subparsers(dest="workers_command", required=True)
    commands.add_parser("list", help="the node's SFU workers and their load (JSON)")
    drain = commands.add_parser("drain", help="place nobody new on a worker",
                                description="New participants go to the other workers. "
                                            "With --migrate the worker's participants are "
                                            "told to rejoin (the web client does) and move.")
    drain.add_argument("index", type=int)
    drain.add_argument("--migrate", action="store_true")
    undrain = commands.add_parser("undrain", help="end a worker's drain")
    undrain.add_argument("index", type=int)


def main(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    try:
        if args.workers_command == "list":
            result: Any = _call("GET", base + "/api/stats").get("workers", [])
        else:
            path = f"{base}/api/workers/{args.index}/drain"
            if args.workers_command == "drain":
                result = _call("POST", path + ("?migrate=1" if args.migrate else ""))
            else:
                result = _call("DELETE", path)
    except (OSError, ValueError) as exc:
        print(f"visio workers: {exc}")
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _call(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"{exc.code} {exc.read().decode(errors='replace')}") from None
