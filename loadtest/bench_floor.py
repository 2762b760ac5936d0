"""``visio bench floor``: what one forwarded copy costs before any SFU logic runs.

Every copy the SFU sends is SRTP-protected and handed to the kernel. This
measures those two steps alone on this machine, as the SFU does them
(libsrtp through pylibsrtp's buffer, AEAD AES-256-GCM as negotiated with
aiortc and Chrome; a non-blocking ``sendto`` of ~1,240 bytes to a receiver
process that reads actively on loopback, so the kernel's delivery and the
receiver's wake-up are paid as in the forwarding benchmark). The sum is the
floor under ``sfu_marginal_us_per_forwarded_packet``.

``sink_sendto_us`` is the same ``sendto`` to 50 receivers that are not
waiting for it (a socket filter drops the datagram in the kernel, as
``loadtest.kernel_sink`` does): the kernel's send and loopback delivery
without the receiver's wake-up. The light subscribers of ``bench forward``
read on a timer (``loadtest.srtp_socket.ReceivePoller``), so most copies
the SFU sends them cost this, not ``sendto_us``.

``wakeup_us`` is the CPU one wake-up of an idle uvloop process by its own
timer costs (100 Hz, nothing else to do): on this VM 100-150 µs, the price
of every timer and every lone packet that finds a process asleep, which is
why periodic work is batched on one ``sfu.ticker.Ticker`` per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import uvloop
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

from loadtest.kernel_sink import drop_media_in_kernel

PACKET = 1228  # RTP header with three extensions + 1,200 bytes of payload
SINKS = 50  # receivers of the sink measurement, as subscribers of ``bench forward``
WAKEUP_HZ = 100  # slow enough that every tick finds the process asleep
WAKEUPS = 40  # per timed run
_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
print(s.getsockname()[1], flush=True)
while True:
    s.recv(2048)
"""


@dataclass
class FloorResult:
    srtp_protect_us: float
    sendto_us: float
    connected_send_us: float
    sink_sendto_us: float
    wakeup_us: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _best_of(runs: int, count: int, step: Any) -> float:
    """µs of CPU per call: the median of ``runs`` timed loops (process time)."""
    results = []
    for _ in range(runs):
        started = time.process_time()
        for index in range(count):
            step(index)
        results.append((time.process_time() - started) / count * 1e6)
    return statistics.median(results)


def _protect_cost(runs: int, count: int) -> float:
    policy = Policy(key=os.urandom(44), ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_256_GCM)
    session = Session(policy)
    header = bytearray(struct.pack("!BBHII", 0x90, 96, 0, 0, 1234) + bytes(16))
    payload = memoryview(os.urandom(PACKET - len(header)))
    buffer, cdata, context = session._buffer, session._cdata, session._srtp[0]
    length = ffi.new("int *")
    head = len(header)

    def protect(index: int) -> None:
        struct.pack_into("!H", header, 2, index & 0xFFFF)
        buffer[0:head] = header
        buffer[head:PACKET] = payload
        length[0] = PACKET
        lib.srtp_protect(context, cdata, length)

    return _best_of(runs, count, protect)


def _send_costs(runs: int, count: int) -> tuple[float, float]:
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE)
    try:
        assert receiver.stdout is not None
        address = ("127.0.0.1", int(receiver.stdout.readline()))
        data = os.urandom(PACKET + 16)
        unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        unconnected.setblocking(False)
        connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected.connect(address)
        connected.setblocking(False)

        def send_to(index: int) -> None:
            with contextlib.suppress(BlockingIOError):
                unconnected.sendto(data, address)
            if index % 20 == 19:
                time.sleep(0.0002)  # a paced stream, so the receiver keeps up and sleeps

        def send(index: int) -> None:
            with contextlib.suppress(BlockingIOError):
                connected.send(data)
            if index % 20 == 19:
                time.sleep(0.0002)

        costs = _best_of(runs, count, send_to), _best_of(runs, count, send)
        unconnected.close()
        connected.close()
        return costs
    finally:
        receiver.kill()
        receiver.wait()


def _sink_send_cost(runs: int, count: int) -> float:
    """``sendto`` round-robin to SINKS receivers that drop RTP in the kernel unread."""
    sinks = []
    try:
        for _ in range(SINKS):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sinks.append(sink)
            sink.bind(("127.0.0.1", 0))
            drop_media_in_kernel(sink)
        addresses = [sink.getsockname() for sink in sinks]
        data = b"\x80" + os.urandom(PACKET + 15)  # an RTP version byte: the filter drops it
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setblocking(False)

        def send_to(index: int) -> None:
            with contextlib.suppress(BlockingIOError):
                sender.sendto(data, addresses[index % SINKS])

        try:
            return _best_of(runs, count, send_to)
        finally:
            sender.close()
    finally:
        for sink in sinks:
            sink.close()


def _wakeup_cost(runs: int, count: int) -> float:
    """µs of CPU per wake-up of an otherwise idle uvloop by its own timer."""
    async def timed() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left = count

        def tick() -> None:
            nonlocal left
            left -= 1
            if left:
                loop.call_later(1 / WAKEUP_HZ, tick)
            else:
                done.set_result(None)

        started = time.process_time()
        loop.call_later(1 / WAKEUP_HZ, tick)
        await done
        return (time.process_time() - started) / count * 1e6

    return statistics.median(uvloop.run(timed()) for _ in range(runs))


def run_floor(runs: int = 5, count: int = 20_000, wakeups: int = WAKEUPS) -> FloorResult:
    protect = _protect_cost(runs, count)
    send_to, send = _send_costs(runs, count)
    return FloorResult(srtp_protect_us=protect, sendto_us=send_to, connected_send_us=send,
                       sink_sendto_us=_sink_send_cost(runs, count),
                       wakeup_us=_wakeup_cost(runs, wakeups))
