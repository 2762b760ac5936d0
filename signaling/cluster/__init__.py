"""Several visio nodes behind one service, coordinated through Redis.

Only loaded when ``visio serve`` gets ``--redis-url``; a single node needs none
of it. The pieces, each with one job:

* ``config``: the node's identity and timings (``ClusterSettings``);
* ``registry``: each node's address and load, under a key that expires;
* ``claims``: which node hosts which room, an atomic claim in Redis;
* ``node``: the heartbeat tying the two together, drain, and the routing
  decision for a ``join`` (host here, or on which node);
* ``proxy``: the WebSocket relay to the hosting node;
* ``events``: the few room events that cross nodes through pub/sub.

See docs/deployment.md.
"""

from signaling.cluster.config import ClusterSettings

__all__ = ["ClusterSettings"]
