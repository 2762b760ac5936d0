"""The sink's socket filter on real loopback UDP sockets: media dropped, STUN and DTLS kept."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from loadtest.kernel_sink import drop_media_in_kernel


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    sender.connect(receiver.getsockname())
    yield receiver, sender
    receiver.close()
    sender.close()


def _received(receiver: socket.socket) -> list[bytes]:
    received = []
    receiver.settimeout(0.2)
    while True:
        try:
            received.append(receiver.recv(2048))
        except TimeoutError:
            return received


def test_filter_drops_rtp_and_rtcp_and_keeps_stun_and_dtls(
        pair: tuple[socket.socket, socket.socket]) -> None:
    receiver, sender = pair
    drop_media_in_kernel(receiver)
    stun = b"\x00\x01\x00\x00" + os.urandom(16)  # binding request (consent check)
    dtls = b"\x17\xfe\xfd" + os.urandom(30)  # DTLS application data
    other = b"\xff" + os.urandom(10)  # RFC 7983: not a media packet either
    for datagram in (stun, b"\x80\x60" + os.urandom(100), dtls, b"\x81\xc8" + os.urandom(26),
                     b"\xbf" + os.urandom(40), other, b"\x90\x60" + os.urandom(1200)):
        sender.send(datagram)
    assert _received(receiver) == [stun, dtls, other]


def test_filter_applies_to_a_duplicate_descriptor(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """The participant attaches it through a dup of uvloop's socket, then closes the dup."""
    receiver, sender = pair
    duplicate = socket.socket(fileno=os.dup(receiver.fileno()))
    drop_media_in_kernel(duplicate)
    duplicate.close()
    sender.send(b"\x80\x60" + os.urandom(100))
    sender.send(b"\x00\x01\x00\x00" + os.urandom(16))
    assert [d[:2] for d in _received(receiver)] == [b"\x00\x01"]


def test_without_the_filter_media_arrives(pair: tuple[socket.socket, socket.socket]) -> None:
    """The control: the same datagrams all arrive on an unfiltered socket."""
    receiver, sender = pair
    sender.send(b"\x80\x60" + os.urandom(100))
    sender.send(b"\x00\x01\x00\x00" + os.urandom(16))
    assert len(_received(receiver)) == 2
