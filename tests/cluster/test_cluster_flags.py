"""``visio serve`` cluster flags: none means a single node; defaults name and address the node."""

from __future__ import annotations

import argparse
import socket

import pytest

from signaling.cluster.config import ClusterSettings
from signaling.settings import Settings, add_serve_arguments, settings_from_arguments


def settings_for(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return settings_from_arguments(parser.parse_args(list(argv)))


def test_without_redis_a_node_stands_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISIO_REDIS_URL", raising=False)
    assert settings_for("--node-id", "n1").cluster is None


def test_defaults_name_the_node_by_host_and_port() -> None:
    cluster = settings_for("--redis-url", "redis://r:6379/0", "--port", "8081").cluster
    assert cluster == ClusterSettings(redis_url="redis://r:6379/0",
                                      node_id=f"{socket.gethostname()}-8081",
                                      advertise_url="http://127.0.0.1:8081")


def test_a_wildcard_host_advertises_the_host_name_and_flags_win() -> None:
    cluster = settings_for("--redis-url", "redis://r", "--host", "0.0.0.0").cluster
    assert cluster is not None
    assert cluster.advertise_url == f"http://{socket.gethostname()}:8080"
    cluster = settings_for("--redis-url", "redis://r", "--host", "::1", "--node-id", "b",
                           "--advertise-url", "https://10.0.0.5:8443/").cluster
    assert cluster is not None
    assert (cluster.node_id, cluster.advertise_url) == ("b", "https://10.0.0.5:8443")
    cluster = settings_for("--redis-url", "redis://r", "--host", "::1").cluster
    assert cluster is not None and cluster.advertise_url == "http://[::1]:8080"


def test_environment_variables_configure_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_REDIS_URL", "redis://env:6379/1")
    monkeypatch.setenv("VISIO_NODE_ID", "from-env")
    monkeypatch.setenv("VISIO_ADVERTISE_URL", "http://10.1.1.1:8080")
    cluster = settings_for().cluster
    assert cluster is not None
    assert (cluster.redis_url, cluster.node_id, cluster.advertise_url) == (
        "redis://env:6379/1", "from-env", "http://10.1.1.1:8080")


@pytest.mark.parametrize("argv", [["--node-id", "a b"], ["--advertise-url", "10.0.0.5:8080"]])
def test_bad_cluster_flags_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        settings_for("--redis-url", "redis://r", *argv)
