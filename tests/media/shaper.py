"""A shaping UDP relay on 127.0.0.1: a narrow link between the SFU and one subscriber.

This kernel has no netem, and a tbf-shaped veth would need an address outside
127.0.0.0/8 in the root namespace, so the test link is made in software: the
subscriber's and the SFU's ICE candidates are rewritten to the relay's port,
and the relay forwards both ways, passing the SFU → subscriber direction
through a token bucket with a drop-tail queue, like a Wi-Fi access point's
buffer in front of a slow link.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque

LOOPBACK = "127.0.0.1"
_CANDIDATE_PORT = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)( typ host)",
                             re.IGNORECASE | re.MULTILINE)


def candidate_port(sdp: str) -> int:
    match = _CANDIDATE_PORT.search(sdp)
    if match is None:
        raise ValueError("no 127.0.0.1 UDP host candidate in the description")
    return int(match.group(2))


def with_candidate_port(sdp: str, port: int) -> str:
    return _CANDIDATE_PORT.sub(lambda m: f"{m.group(1)}{port}{m.group(3)}", sdp)


class ShapingRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one peer and the SFU; limits the SFU → peer rate."""

    def __init__(self, rate_bps: int, queue_seconds: float = 0.2) -> None:
        self.rate_bps = rate_bps
        self.queue_seconds = queue_seconds
        self.sfu: tuple[str, int] | None = None
        self.peer: tuple[str, int] | None = None
        self.port = 0
        self.dropped = 0
        self.max_backlog = 0.0  # seconds of queue the link held at its worst
        self.forwarded_down = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._next_free = 0.0  # when the link finishes sending what it holds
        self._draining = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                           local_addr=(LOOPBACK, 0))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self._transport = transport

    def set_rate(self, rate_bps: int) -> None:
        self.rate_bps = rate_bps

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is None or self.sfu is None or self.peer is None:
            return
        if addr == self.sfu:
            self._enqueue(data)
        elif addr == self.peer:
            self._transport.sendto(data, self.sfu)

    def _enqueue(self, data: bytes) -> None:
        backlog = self._queued_bytes * 8 / self.rate_bps
        self.max_backlog = max(self.max_backlog, backlog)
        if backlog > self.queue_seconds:
            self.dropped += 1  # drop-tail: the buffer in front of the slow link is full
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        if not self._draining:
            self._draining = True
            self._drain()

    def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        while self._queue:
            if self._next_free > now:
                loop.call_later(self._next_free - now, self._drain)
                return
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self._next_free = max(self._next_free, now) + len(data) * 8 / self.rate_bps
            if self._transport is not None and self.peer is not None:
                self._transport.sendto(data, self.peer)
                self.forwarded_down += 1
        self._draining = False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
