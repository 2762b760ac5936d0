"""The cluster's Prometheus lines, each labelled with this node's id."""

from __future__ import annotations

from aiohttp import web

from signaling.cluster.node import ClusterNode

CLUSTER_KEY = web.AppKey("cluster", ClusterNode)


def cluster_metrics(app: web.Application) -> str:
    """The cluster's lines for /metrics; empty on a single node."""
    node = app.get(CLUSTER_KEY)
    return render_cluster_metrics(node) if node is not None else ""


def render_cluster_metrics(node: ClusterNode) -> str:
    label = f'node="{_escape(node.node_id)}"'
    counters = node.counters
    rows = [
        ("visio_node_info", "gauge", "this node (value 1), its id and advertised URL",
         f'{{{label},url="{_escape(node.settings.advertise_url)}"}}', 1),
        ("visio_node_draining", "gauge", "1 while this node takes no new rooms",
         f"{{{label}}}", int(node.draining)),
        ("visio_cluster_nodes", "gauge", "live nodes in the Redis registry (last heartbeat)",
         f"{{{label}}}", len(node.nodes)),
        ("visio_cluster_rooms_claimed", "gauge", "rooms this node holds the claim of",
         f"{{{label}}}", len(node.owned)),
        ("visio_cluster_relays_open", "gauge",
         "sockets this node relays to the node hosting their room", f"{{{label}}}",
         counters.relays_open),
        ("visio_cluster_relays_total", "counter", "sockets relayed to another node",
         f"{{{label}}}", counters.relays_total),
        ("visio_cluster_relays_failed_total", "counter",
         "relays whose hosting node could not be reached", f"{{{label}}}",
         counters.relays_failed),
        ("visio_cluster_heartbeat_failures_total", "counter",
         "heartbeats that could not reach Redis", f"{{{label}}}", counters.heartbeat_failures),
        ("visio_cluster_claims_lost_total", "counter",
         "room claims found taken over by another node", f"{{{label}}}", counters.claims_lost),
    ]
    out: list[str] = []
    for name, kind, help_text, labels, value in rows:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{labels} {value}"]
    return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
