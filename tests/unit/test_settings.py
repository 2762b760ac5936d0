"""signaling.settings: ICE server list for browsers and ICE bind/announce defaults."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from sfu.aiortc_bridge import IceSettings
from signaling.settings import (
    WEB_CLIENT_DIR,
    Settings,
    add_serve_arguments,
    browser_ice_servers,
    settings_from_arguments,
)

ENV_VARS = ("VISIO_HOST", "VISIO_PORT", "VISIO_ICE_ANNOUNCE", "VISIO_ICE_BIND",
            "VISIO_ICE_SERVERS", "VISIO_TURN_USERNAME", "VISIO_TURN_CREDENTIAL",
            "VISIO_MAX_PARTICIPANTS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def settings_for(*argv: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return settings_from_arguments(parser.parse_args(list(argv)))


# ----------------------------------------------------------------- browser_ice_servers


def test_no_urls_no_servers() -> None:
    assert browser_ice_servers([], None, None) == []
    assert browser_ice_servers([], "user", "secret") == []


def test_stun_urls_are_plain() -> None:
    urls = ["stun:stun.example.org:3478", "stuns:stun.example.org:5349"]
    assert browser_ice_servers(urls, None, None) == [{"urls": urls}]


def test_stun_urls_never_carry_credentials() -> None:
    assert browser_ice_servers(["stun:a.example"], "user", "secret") == [
        {"urls": ["stun:a.example"]}]


def test_turn_urls_carry_credentials() -> None:
    urls = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443"]
    assert browser_ice_servers(urls, "user", "secret") == [
        {"urls": urls, "username": "user", "credential": "secret"}]


def test_stun_and_turn_are_split_keeping_order() -> None:
    urls = ["turn:t1.example", "stun:s1.example", "turns:t2.example", "stun:s2.example"]
    assert browser_ice_servers(urls, "u", "c") == [
        {"urls": ["stun:s1.example", "stun:s2.example"]},
        {"urls": ["turn:t1.example", "turns:t2.example"], "username": "u", "credential": "c"},
    ]


@pytest.mark.parametrize(("username", "credential"),
                         [(None, None), ("user", None), (None, "secret"), ("", "secret"),
                          ("user", "")])
def test_turn_needs_credentials(username: str | None, credential: str | None) -> None:
    with pytest.raises(ValueError, match="turn-username"):
        browser_ice_servers(["stun:s.example", "turn:t.example"], username, credential)


@pytest.mark.parametrize("url", ["http://stun.example.org", "stun.example.org:3478", "",
                                 "udp:1.2.3.4:3478", "stun", "turnx:t.example"])
def test_bad_scheme_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="must start with") as info:
        browser_ice_servers(["stun:ok.example", url], "u", "c")
    assert json.dumps([url]) in str(info.value)  # names the offending URL, and only it


# ----------------------------------------------------------------- settings_from_arguments


def test_defaults() -> None:
    settings = settings_for()
    assert settings == Settings(
        host="127.0.0.1", port=8080,
        ice=IceSettings(bind_address="127.0.0.1", announced_address="127.0.0.1"),
        ice_servers=[], max_participants_per_room=100, web_client_dir=WEB_CLIENT_DIR,
        workers=len(os.sched_getaffinity(0)),  # one SFU worker process per core
    )


def test_workers_flag() -> None:
    assert settings_for("--workers", "0").workers == 0  # the SFU in the signaling process
    settings = settings_for("--workers", "3", "--room-participants-per-worker", "5")
    assert (settings.workers, settings.room_participants_per_worker) == (3, 5)
    with pytest.raises(ValueError, match="negative"):
        settings_for("--workers", "-1")


@pytest.mark.parametrize("announce", ["127.0.0.1", "127.0.0.2", "127.10.20.30", "::1"])
def test_loopback_announce_binds_the_same_address(announce: str) -> None:
    ice = settings_for("--ice-announce", announce).ice
    assert ice == IceSettings(bind_address=announce, announced_address=announce)
    assert ice.loopback is True


@pytest.mark.parametrize("announce", ["203.0.113.7", "10.1.2.3", "192.168.0.10"])
def test_public_announce_binds_every_interface(announce: str) -> None:
    ice = settings_for("--ice-announce", announce).ice
    assert ice == IceSettings(bind_address="0.0.0.0", announced_address=announce)
    assert ice.loopback is False


def test_public_ipv6_announce_binds_the_ipv6_wildcard() -> None:
    assert settings_for("--ice-announce", "2001:db8::7").ice.bind_address == "::"


def test_explicit_bind_wins() -> None:
    ice = settings_for("--ice-announce", "203.0.113.7", "--ice-bind", "10.0.0.5").ice
    assert ice == IceSettings(bind_address="10.0.0.5", announced_address="203.0.113.7")
    ice = settings_for("--ice-announce", "127.0.0.1", "--ice-bind", "127.0.0.9").ice
    assert ice.bind_address == "127.0.0.9"


def test_announce_must_be_an_ip_address() -> None:
    with pytest.raises(ValueError):
        settings_for("--ice-announce", "sfu.example.org")


def test_flags() -> None:
    settings = settings_for("--host", "0.0.0.0", "--port", "9443", "--max-participants", "7",
                            "--ice-server", "stun:s.example", "--ice-server", "turn:t.example",
                            "--turn-username", "u", "--turn-credential", "c")
    assert settings.host == "0.0.0.0"
    assert settings.port == 9443
    assert settings.max_participants_per_room == 7
    assert settings.ice_servers == [
        {"urls": ["stun:s.example"]},
        {"urls": ["turn:t.example"], "username": "u", "credential": "c"},
    ]


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_HOST", "::")
    monkeypatch.setenv("VISIO_PORT", "8443")
    monkeypatch.setenv("VISIO_ICE_ANNOUNCE", "198.51.100.4")
    monkeypatch.setenv("VISIO_ICE_SERVERS", " stun:a.example , turns:b.example:443,, ")
    monkeypatch.setenv("VISIO_TURN_USERNAME", "env-user")
    monkeypatch.setenv("VISIO_TURN_CREDENTIAL", "env-secret")
    monkeypatch.setenv("VISIO_MAX_PARTICIPANTS", "30")
    settings = settings_for()
    assert settings.host == "::"
    assert settings.port == 8443
    assert settings.ice == IceSettings(bind_address="0.0.0.0", announced_address="198.51.100.4")
    assert settings.ice_servers == [
        {"urls": ["stun:a.example"]},
        {"urls": ["turns:b.example:443"], "username": "env-user", "credential": "env-secret"},
    ]
    assert settings.max_participants_per_room == 30


def test_environment_bind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_ICE_ANNOUNCE", "198.51.100.4")
    monkeypatch.setenv("VISIO_ICE_BIND", "10.0.0.8")
    assert settings_for().ice.bind_address == "10.0.0.8"


def test_flag_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_ICE_ANNOUNCE", "198.51.100.4")
    monkeypatch.setenv("VISIO_PORT", "8443")
    settings = settings_for("--ice-announce", "127.0.0.1", "--port", "1234")
    assert settings.ice.announced_address == "127.0.0.1"
    assert settings.ice.bind_address == "127.0.0.1"
    assert settings.port == 1234


def test_ice_server_flag_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_ICE_SERVERS", "stun:env.example")
    settings = settings_for("--ice-server", "stun:flag.example")
    assert settings.ice_servers == [{"urls": ["stun:flag.example"]}]


def test_bad_ice_server_in_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIO_ICE_SERVERS", "stun:a.example,https://x.example")
    with pytest.raises(ValueError, match="must start with"):
        settings_for()
