"""Room placement: which node hosts a room, as one atomic claim per room in Redis.

``visio:room:<room>`` holds the hosting node's id with a time to live that the
owner's heartbeat refreshes. Every decision is one Lua script, so two nodes
racing for the same room always agree on a single owner:

* ``claim``: no owner, or an owner whose registry entry has expired (a dead
  node) → the room goes to the candidate; otherwise the current owner stays.
  Checking the owner's registry entry means a killed node loses its rooms
  when its entry expires, not later.
* ``refresh``: the owner extends its claims (re-creating one that vanished,
  e.g. after a Redis restart); a claim that now names another node (taken
  over after this node looked dead) is reported as lost.
* ``release``: the owner deletes its claim when the room empties.

The scripts read the owner's node key, which is not among their declared keys:
this needs a single Redis server (or a primary with replicas/Sentinel), not
Redis Cluster's sharding. See docs/deployment.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from signaling.cluster.config import ClusterSettings

# KEYS[1] room key; ARGV: candidate id, ttl ms, node key prefix. Returns the owner after the call.
CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return ARGV[1]
"""

# KEYS: room keys; ARGV: owner id, ttl ms. Returns 1 per key still owned (refreshed), else 0.
# A missing key is claimed again: Redis restarted empty, or the owner's beats were late, and
# nobody else took the room meanwhile.
REFRESH = """
local kept = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept[i] = 1
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    kept[i] = 1
  else
    kept[i] = 0
  end
end
return kept
"""

# KEYS[1] room key; ARGV[1] owner id. Deletes the claim only if it is still the owner's.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RoomClaims:
    """The claim scripts, bound to one Redis connection pool."""

    def __init__(self, redis: Redis, settings: ClusterSettings) -> None:
        self._redis = redis
        self._settings = settings
        self._claim = redis.register_script(CLAIM)
        self._refresh = redis.register_script(REFRESH)
        self._release = redis.register_script(RELEASE)

    async def claim(self, room: str, candidate: str) -> str:
        """The room's owner: the live node already hosting it, else ``candidate`` from now on."""
        owner = await self._claim(keys=[self._settings.room_key(room)],
                                  args=[candidate, self._settings.ttl_ms,
                                        self._settings.node_key("")])
        return _text(owner)

    async def owner(self, room: str) -> str | None:
        value = await self._redis.get(self._settings.room_key(room))
        return None if value is None else _text(value)

    async def refresh(self, rooms: Iterable[str], owner: str) -> set[str]:
        """Extends ``owner``'s claims on ``rooms``; returns the rooms it no longer owns."""
        names = list(rooms)
        if not names:
            return set()
        kept = await self._refresh(keys=[self._settings.room_key(r) for r in names],
                                   args=[owner, self._settings.ttl_ms])
        return {room for room, still in zip(names, kept, strict=True) if not still}

    async def release(self, room: str, owner: str) -> bool:
        return bool(await self._release(keys=[self._settings.room_key(room)], args=[owner]))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
