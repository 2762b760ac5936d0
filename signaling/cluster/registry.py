"""The node registry: every live node's address and load, under keys that expire.

Each node writes ``visio:node:<id>`` (a JSON object) every heartbeat with a
time to live of a few heartbeats. Nothing ever deletes the entry of a node
that dies: it simply expires, and with it the node's claims on rooms
(claims.py checks for it). A node that stops cleanly deletes its entry at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from signaling.cluster.config import ClusterSettings

SCAN_BATCH = 200


@dataclass(frozen=True)
class NodeRecord:
    """What one node tells the others about itself."""

    node_id: str
    url: str  # its advertised base URL (other nodes proxy to url + "/ws")
    rooms: int = 0
    participants: int = 0  # the load placement compares
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeRecord | None:
        """A record, or None for an entry this version cannot read (never raises)."""
        try:
            data: Any = json.loads(text)
            return cls(node_id=str(data["node_id"]), url=str(data["url"]),
                       rooms=int(data.get("rooms", 0)),
                       participants=int(data.get("participants", 0)),
                       draining=bool(data.get("draining", False)))
        except (ValueError, TypeError, KeyError):
            return None


class NodeRegistry:
    """Reads and writes node entries; one per process."""

    def __init__(self, redis: Redis, settings: ClusterSettings) -> None:
        self._redis = redis
        self._settings = settings

    async def announce(self, record: NodeRecord) -> None:
        await self._redis.set(self._settings.node_key(record.node_id), record.to_json(),
                              px=self._settings.ttl_ms)

    async def withdraw(self, node_id: str) -> None:
        await self._redis.delete(self._settings.node_key(node_id))

    async def get(self, node_id: str) -> NodeRecord | None:
        text = await self._redis.get(self._settings.node_key(node_id))
        return NodeRecord.from_json(text) if text is not None else None

    async def nodes(self) -> list[NodeRecord]:
        """Every live node, in id order."""
        keys = [key async for key in self._redis.scan_iter(
            match=self._settings.node_key("*"), count=SCAN_BATCH)]
        if not keys:
            return []
        records = [NodeRecord.from_json(text) for text in await self._redis.mget(keys)
                   if text is not None]
        return sorted((r for r in records if r is not None), key=lambda r: r.node_id)
