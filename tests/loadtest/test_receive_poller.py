"""The light client's shared epoll set reads several datagrams per wake-up, and loses none.

Datagrams are sent 0.3 ms apart on real loopback sockets by a thread.
Read at once, nearly every datagram is a wake-up of its own; read 1 ms
after the set turns readable (the default), a wake-up finds several.
Either way every datagram is read, sockets can come and go, and the
poller stops when its last socket leaves.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvloop

from loadtest.srtp_socket import ReceivePoller

DATAGRAMS = 40
SPACING_S = 0.0003


async def _receive(coalesce_s: float, sockets: int = 3,
                   empty_reads: list[int] | None = None) -> tuple[int, list[int]]:
    """Sends DATAGRAMS round-robin to ``sockets`` sockets: (wake-ups, datagrams read each)."""
    poller = ReceivePoller.for_loop()
    poller.COALESCE_S = coalesce_s
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    read = [0] * sockets
    try:
        for index, receiver in enumerate(receivers):
            receiver.bind(("127.0.0.1", 0))
            receiver.setblocking(False)

            def read_one(receiver: socket.socket = receiver, index: int = index) -> None:
                try:
                    receiver.recv(2048)
                except BlockingIOError:
                    return
                read[index] += 1

            poller.add(receiver.fileno(), read_one)
        targets = [receiver.getsockname() for receiver in receivers]

        def send() -> None:  # a thread: the loop's timers have only millisecond resolution
            for number in range(DATAGRAMS):
                sender.sendto(b"\x80" * 100, targets[number % sockets])
                time.sleep(SPACING_S)

        thread = threading.Thread(target=send)
        thread.start()
        for _ in range(200):  # up to 2 s on a busy machine
            await asyncio.sleep(0.01)
            if sum(read) == DATAGRAMS:
                break
        thread.join()
        if empty_reads is not None:
            empty_reads.append(poller.empty_reads)
        return poller.wakeups, read
    finally:
        for receiver in receivers:
            poller.remove(receiver.fileno())
            receiver.close()
        sender.close()
        # the last socket left: the next one of this loop gets a new set
        assert ReceivePoller._by_loop.get(asyncio.get_running_loop()) is not poller


@pytest.mark.parametrize("coalesce_s", [0.0, 0.001])
def test_every_datagram_is_read(coalesce_s: float) -> None:
    wakeups, read = uvloop.run(_receive(coalesce_s))
    assert read == [DATAGRAMS // 3 + (1 if index < DATAGRAMS % 3 else 0) for index in range(3)]
    assert wakeups >= 1


def test_coalescing_reads_several_datagrams_per_wakeup() -> None:
    at_once, _ = uvloop.run(_receive(0.0))
    coalesced, read = uvloop.run(_receive(0.001))
    assert sum(read) == DATAGRAMS
    # 40 datagrams over 12 ms: ~13 wake-ups at most with 1 ms, ~40 at once
    assert coalesced <= DATAGRAMS // 2 < at_once, (coalesced, at_once)


def test_no_timer_wake_up_is_spent_on_an_empty_set() -> None:
    """Each read comes COALESCE_S after the set turned readable and the set is watched
    again at once: no read is scheduled on a guess that finds nothing (a wake-up from
    idle costs this VM more than a hundred packets' reads)."""
    empty_reads: list[int] = []
    wakeups, read = uvloop.run(_receive(0.001, empty_reads=empty_reads))
    assert sum(read) == DATAGRAMS
    assert wakeups > 0 and empty_reads == [0], (empty_reads, wakeups)
