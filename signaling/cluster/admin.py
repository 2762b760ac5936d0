"""``visio cluster …``: look at the nodes, drain one, tell a room something, from a shell.

These commands talk to Redis only (the same ``--redis-url`` as the nodes):
a node picks a drain request up at its next heartbeat, and room events reach
the hosting node through pub/sub (events.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from signaling.cluster.config import KEY_PREFIX, ClusterSettings
from signaling.cluster.events import RoomBus
from signaling.cluster.node import DRAIN_FINISH, DRAIN_MIGRATE
from signaling.cluster.registry import NodeRegistry

ADMIN_NODE_ID = "admin"  # the origin of events sent from this command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get("VISIO_REDIS_URL"),
                        help="the cluster's Redis (env VISIO_REDIS_URL)")
    commands = parser.add_subparsers(dest="cluster_command", required=True)
    commands.add_parser("nodes", help="list the live nodes, their address and load (JSON)")
    drain = commands.add_parser(
        "drain", help="stop placing new rooms on a node",
        description="The node stops taking new rooms (they go to the least-loaded other "
                    "node) and /readyz answers 503. Rooms it hosts finish there, or with "
                    "--migrate their participants are disconnected and reconnect elsewhere. "
                    "Restarting the node ends the drain.")
    drain.add_argument("node_id", help="the node's --node-id")
    drain.add_argument("--migrate", action="store_true",
                       help="move the node's rooms now instead of letting them finish")
    notice = commands.add_parser("notice", help="show a message to everyone in a room, "
                                                "whichever node hosts it")
    notice.add_argument("room")
    notice.add_argument("text")
    close = commands.add_parser("close-room", help="disconnect a room's participants; their "
                                                   "clients reconnect and the room is placed "
                                                   "again")
    close.add_argument("room")
    close.add_argument("--reason", default="closed by an operator")


def main(args: argparse.Namespace) -> int:
    if not args.redis_url:
        print("visio cluster: --redis-url (or VISIO_REDIS_URL) is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except (RedisError, OSError) as exc:
        print(f"visio cluster: Redis at {args.redis_url} failed: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    redis = Redis.from_url(args.redis_url, decode_responses=True)
    settings = ClusterSettings(redis_url=args.redis_url, node_id=ADMIN_NODE_ID,
                               advertise_url="http://admin.invalid", prefix=KEY_PREFIX)
    try:
        registry = NodeRegistry(redis, settings)
        command = args.cluster_command
        if command == "nodes":
            print(json.dumps([asdict(n) for n in await registry.nodes()], indent=2))
            return 0
        if command == "drain":
            if await registry.get(args.node_id) is None:
                print(f"visio cluster: no live node {args.node_id!r}", file=sys.stderr)
                return 1
            await redis.set(settings.drain_key(args.node_id),
                            DRAIN_MIGRATE if args.migrate else DRAIN_FINISH)
            print(f"node {args.node_id} drains from its next heartbeat "
                  f"({'rooms migrate' if args.migrate else 'rooms finish there'})")
            return 0
        bus = RoomBus(redis, redis, settings.events_channel, ADMIN_NODE_ID, _never)
        if command == "notice":
            message = {"type": "chat", "participant_id": "", "name": "visio",
                       "text": args.text, "ts": int(time.time() * 1000)}
            listeners = await bus.publish(args.room, "broadcast", message=message)
        else:
            listeners = await bus.publish(args.room, "close", reason=args.reason)
        print(f"sent to {listeners} node(s); the one hosting {args.room!r} acts on it")
        return 0
    finally:
        await redis.aclose()


async def _never(event: object) -> None:
    raise AssertionError("this command only publishes")
