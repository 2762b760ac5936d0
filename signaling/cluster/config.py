"""A node's identity in the cluster and the timings of its heartbeat."""

from __future__ import annotations

from dataclasses import dataclass

KEY_PREFIX = "visio:"


@dataclass(frozen=True)
class ClusterSettings:
    """What ``--redis-url``, ``--node-id`` and ``--advertise-url`` say.

    ``ttl`` bounds how long a dead node still looks alive (and still owns its
    rooms): its registry entry and room claims expire ``ttl`` seconds after its
    last heartbeat, so participants of a killed node land on another one a few
    seconds later. ``heartbeat`` must be well below ``ttl`` so that one late
    beat on a busy event loop does not drop a live node.
    """

    redis_url: str
    node_id: str
    advertise_url: str  # base URL other nodes reach this node's /ws at, e.g. http://10.0.0.5:8080
    heartbeat: float = 1.0
    ttl: float = 3.0
    prefix: str = KEY_PREFIX

    def __post_init__(self) -> None:
        if not self.node_id or any(c in self.node_id for c in " :*?[]"):
            raise ValueError(f"--node-id must be a non-empty name without spaces, ':' or "
                             f"glob characters ({self.node_id!r})")
        if not self.advertise_url.startswith(("http://", "https://")):
            raise ValueError(f"--advertise-url must start with http:// or https:// "
                             f"({self.advertise_url!r})")
        if not 0 < self.heartbeat < self.ttl:
            raise ValueError("the heartbeat interval must be shorter than the TTL")

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    def node_key(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def room_key(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def drain_key(self, node_id: str) -> str:
        return f"{self.prefix}drain:{node_id}"

    @property
    def events_channel(self) -> str:
        return f"{self.prefix}room-events"
