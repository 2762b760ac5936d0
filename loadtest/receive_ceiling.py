"""How many SRTP packets per second one core of light-client receive path absorbs.

    python -m loadtest.receive_ceiling --sockets 50 --rate 100000 --seconds 6

The SFU on this machine cannot feed a listener process much beyond 10,000
packets/s, so the receive path's own ceiling is measured without it: a
sender process (pinned to the first core) sends pre-protected SRTP packets
(VP8-sized, 1,200 bytes, 5 per frame, a transport-cc extension; AES-128-GCM
as the SFU negotiates with aiortc) round-robin to N UDP sockets at a given
rate; this process (pinned to the second core) reads them with the light
participant's real ``SocketReader`` and ``RtpCounter`` (decrypt, header,
loss, jitter, frames, transport-cc arrivals). It prints the receiver's CPU
time per packet (``time.process_time``), the rate it absorbed and the loss.
No RTCP, ICE or signaling here: that per-participant cost is in
``visio bench forward``'s client figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pylibsrtp
import uvloop

from loadtest.rtp_receive import ReceivedStream, RtpCounter
from loadtest.srtp_socket import SocketReader

KEY = bytes(range(28))  # AES-128-GCM: 16-byte key + 12-byte salt
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM
TWCC_ID = 3
BURST = 5  # packets per frame, sent back to back to one socket
PAYLOAD = 1150


def _policy(direction: int) -> pylibsrtp.Policy:
    return pylibsrtp.Policy(key=KEY, ssrc_type=direction, srtp_profile=PROFILE)


def _packet(seq: int, ssrc: int) -> bytes:
    """A VP8-like RTP packet: one-byte extension with transport-cc, marker on a frame's last."""
    marker = 0x80 if seq % BURST == BURST - 1 else 0
    header = bytes([0x90, 96 | marker]) + (seq & 0xFFFF).to_bytes(2, "big")
    header += ((seq // BURST) * 3000 & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + bytes([TWCC_ID << 4 | 1]) + (seq & 0xFFFF).to_bytes(
        2, "big") + b"\x00"
    first = b"\x10" if seq % BURST == 0 else b"\x00"  # VP8 descriptor: S on a frame's first
    return header + extension + first + b"\x5a" * PAYLOAD


def send(ports: list[int], rate: float, seconds: float) -> None:
    """The sender process: frames of BURST packets to each socket in turn, paced to ``rate``.

    Packets are protected as they go (SRTP's replay protection forbids
    resending one); a sender that cannot keep up simply offers less, and the
    receiver reports the rate it absorbed.
    """
    sessions = [pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)) for _ in ports]
    targets = [("127.0.0.1", port) for port in ports]
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    period = BURST * len(ports) / rate
    started = time.monotonic()
    frame = 0
    while time.monotonic() - started < seconds:
        for index, session in enumerate(sessions):
            for seq in range(frame * BURST, (frame + 1) * BURST):
                with contextlib.suppress(BlockingIOError):
                    out.sendto(session.protect(_packet(seq, 0x1000 + index)), targets[index])
        frame += 1
        delay = started + frame * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _Endpoint(asyncio.DatagramProtocol):
    """What aioice's protocol is to SocketReader: a transport and a datagram handler."""

    transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass  # nothing but SRTP arrives here


async def receive(count: int, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counters, readers, ports = [], [], []
    for _ in range(count):
        transport, protocol = await loop.create_datagram_endpoint(
            _Endpoint, local_addr=("127.0.0.1", 0))
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        ports.append(transport.get_extra_info("sockname")[1])
        counter = RtpCounter(lambda ssrc, pt: ReceivedStream(ssrc, "video", "0", 90000,
                                                             vp8=True), lambda name: None)
        counter.twcc_id = TWCC_ID
        session = pylibsrtp.Session(_policy(pylibsrtp.Policy.SSRC_ANY_INBOUND))
        readers.append(SocketReader(protocol, ("127.0.0.1", 9), session, counter))
        counters.append(counter)
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[0]})  # the sender inherits the first core
    sender = subprocess.Popen([sys.executable, "-m", "loadtest.receive_ceiling", "--send",
                               json.dumps(ports), "--rate", str(rate), "--seconds",
                               str(seconds + warmup + 2)])
    os.sched_setaffinity(0, {cores[-1]})
    try:
        await asyncio.sleep(warmup)
        cpu0, at0 = time.process_time(), time.monotonic()
        packets0 = sum(c.packets for c in counters)
        await asyncio.sleep(seconds)
        cpu1, at1 = time.process_time(), time.monotonic()
        packets1 = sum(c.packets for c in counters)
    finally:
        sender.terminate()
        sender.wait(timeout=10)
        for reader in readers:
            reader.close()
    packets = packets1 - packets0
    lost = sum(s.lost for c in counters for s in c.streams.values())
    expected = sum(s.expected for c in counters for s in c.streams.values())
    return {"sockets": count, "offered_pps": rate, "absorbed_pps": round(packets / (at1 - at0)),
            "client_cpu_us_per_received_packet": round(1e6 * (cpu1 - cpu0) / max(1, packets), 2),
            "client_cpu_pct": round(100 * (cpu1 - cpu0) / (at1 - at0), 1),
            "loss_pct": round(100 * lost / max(1, expected), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100_000.0, help="packets/s offered")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--send", metavar="PORTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        send(json.loads(args.send), args.rate, args.seconds)
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two cores (the sender on one, the receiver on the other)")
    print(json.dumps(uvloop.run(receive(args.sockets, args.rate, args.seconds, args.warmup)),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
