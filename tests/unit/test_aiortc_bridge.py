"""sfu.aiortc_bridge: the pure helpers (candidate filtering, IceSettings, self_check)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfu import aiortc_bridge
from sfu.aiortc_bridge import (
    PINNED_VERSIONS,
    AiortcInternalsChanged,
    IceSettings,
    filter_remote_candidates,
    installed_versions,
    ntp_now,
    self_check,
)

LOOPBACK = IceSettings(bind_address="127.0.0.1", announced_address="127.0.0.1")
PUBLIC = IceSettings(bind_address="0.0.0.0", announced_address="203.0.113.1")

HEAD = [
    "v=0",
    "o=- 123 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "c=IN IP4 0.0.0.0",
    "a=mid:0",
]
C_LAN = "a=candidate:1 1 udp 2122260223 192.168.1.10 54321 typ host generation 0"
C_LOOP = "a=candidate:2 1 udp 2122194687 127.0.0.1 54322 typ host generation 0"
C_LOOP_OTHER = "a=candidate:3 1 udp 2122194687 127.4.5.6 54323 typ host"
C_LOOP6 = "a=candidate:4 1 udp 2122194687 ::1 54324 typ host"
C_TCP_LAN = "a=candidate:5 1 tcp 1518280447 192.168.1.10 9 typ host tcptype active"
C_TCP_LOOP = "a=candidate:6 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active"
C_MDNS = ("a=candidate:7 1 udp 2113937151 3f2a1b6c-1d2e-4f50-9a8b-7c6d5e4f3a2b.local 54325 "
          "typ host generation 0")
C_SRFLX = ("a=candidate:8 1 udp 1686052607 198.51.100.9 54326 typ srflx raddr 192.168.1.10 "
           "rport 54321")
C_GLOBAL6 = "a=candidate:9 1 udp 2122262783 2001:db8::5 54327 typ host"
C_UPPER_UDP = "a=candidate:10 1 UDP 2122194687 127.0.0.1 54328 typ host"
C_UPPER_TCP = "A=CANDIDATE:11 1 TCP 1518280447 127.0.0.1 9 TYP HOST tcptype passive"
TAIL = ["a=end-of-candidates", "a=rtpmap:111 opus/48000/2"]

ALL_CANDIDATES = [C_LAN, C_LOOP, C_LOOP_OTHER, C_LOOP6, C_TCP_LAN, C_TCP_LOOP, C_MDNS, C_SRFLX,
                  C_GLOBAL6, C_UPPER_UDP, C_UPPER_TCP]


def sdp(*candidates: str, newline: str = "\r\n") -> str:
    return newline.join([*HEAD, *candidates, *TAIL]) + newline


def test_loopback_mode_keeps_only_loopback_udp() -> None:
    result = filter_remote_candidates(sdp(*ALL_CANDIDATES), LOOPBACK)
    assert result == sdp(C_LOOP, C_LOOP_OTHER, C_LOOP6, C_UPPER_UDP)


def test_public_mode_drops_loopback_and_tcp() -> None:
    result = filter_remote_candidates(sdp(*ALL_CANDIDATES), PUBLIC)
    assert result == sdp(C_LAN, C_MDNS, C_SRFLX, C_GLOBAL6)


@pytest.mark.parametrize("ice", [LOOPBACK, PUBLIC], ids=["loopback", "public"])
def test_tcp_candidates_always_dropped(ice: IceSettings) -> None:
    result = filter_remote_candidates(sdp(C_TCP_LAN, C_TCP_LOOP, C_UPPER_TCP), ice)
    assert "candidate" not in result.replace("end-of-candidates", "")
    assert result == sdp()


def test_mdns_candidates_dropped_in_loopback_mode() -> None:
    assert filter_remote_candidates(sdp(C_MDNS), LOOPBACK) == sdp()
    assert filter_remote_candidates(sdp(C_MDNS), PUBLIC) == sdp(C_MDNS)


def test_other_lines_are_kept_and_crlf_is_written() -> None:
    result = filter_remote_candidates(sdp(C_LAN, C_LOOP, newline="\n"), LOOPBACK)
    assert result == sdp(C_LOOP)
    assert result.endswith("a=rtpmap:111 opus/48000/2\r\n")


def test_no_candidates_no_change() -> None:
    assert filter_remote_candidates(sdp(), LOOPBACK) == sdp()
    assert filter_remote_candidates(sdp(), PUBLIC) == sdp()


def test_loopback_mode_for_any_127_announce() -> None:
    ice = IceSettings(bind_address="127.0.0.2", announced_address="127.0.0.2")
    assert filter_remote_candidates(sdp(C_LAN, C_LOOP), ice) == sdp(C_LOOP)


candidate_lines = st.sampled_from(ALL_CANDIDATES)
other_lines = st.sampled_from(HEAD + TAIL + ["a=candidate-ish", "a=ice-ufrag:abcd"])


@given(st.lists(candidate_lines | other_lines, min_size=1, max_size=20),
       st.sampled_from([LOOPBACK, PUBLIC]))
def test_filter_properties(lines: list[str], ice: IceSettings) -> None:
    text = "\r\n".join(lines) + "\r\n"
    result = filter_remote_candidates(text, ice)
    assert result.endswith("\r\n")
    kept = [line for line in result.split("\r\n") if line]
    assert filter_remote_candidates(result, ice) == result  # idempotent
    assert [line for line in lines if line not in ALL_CANDIDATES] == [
        line for line in kept if line not in ALL_CANDIDATES]  # other lines untouched, in order
    remaining = iter(lines)
    assert all(line in remaining for line in kept)  # an ordered subsequence of the input
    for line in kept:
        if line in ALL_CANDIDATES:
            assert " udp " in line.lower()


# ----------------------------------------------------------------- IceSettings


@pytest.mark.parametrize(("address", "loopback"),
                         [("127.0.0.1", True), ("127.255.0.3", True), ("::1", True),
                          ("10.0.0.1", False), ("203.0.113.1", False), ("0.0.0.0", False),
                          ("2001:db8::1", False)])
def test_ice_settings_loopback(address: str, loopback: bool) -> None:
    assert IceSettings(bind_address="0.0.0.0", announced_address=address).loopback is loopback


def test_ice_settings_defaults_are_loopback() -> None:
    assert IceSettings() == IceSettings(bind_address="127.0.0.1", announced_address="127.0.0.1")
    assert IceSettings().loopback is True


# ----------------------------------------------------------------- self_check


def test_self_check_passes_on_installed_versions() -> None:
    self_check()
    assert installed_versions() == PINNED_VERSIONS


def test_self_check_reports_a_version_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(aiortc_bridge.PINNED_VERSIONS, "aiortc", "0.0.1")
    with pytest.raises(AiortcInternalsChanged, match=r"aiortc 1\.16\.0 is installed.*0\.0\.1"):
        self_check()


def test_self_check_reports_a_missing_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc_bridge, "_REQUIRED_INTERNALS",
                        [*aiortc_bridge._REQUIRED_INTERNALS,
                         (aiortc_bridge.RTCDtlsTransport, "_visio_not_there")])
    with pytest.raises(AiortcInternalsChanged, match=r"RTCDtlsTransport\._visio_not_there"):
        self_check()


def test_ntp_now_is_current_time() -> None:
    ntp = ntp_now()
    seconds = (ntp >> 32) - 2_208_988_800  # NTP era 0 starts in 1900
    assert abs(seconds - time.time()) < 5
    assert 0 <= ntp < 2**64
