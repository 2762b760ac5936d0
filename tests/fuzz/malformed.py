"""Seeded generators of hostile input: signaling frames, RTP packets, RTCP packets.

Structure-aware: most cases start from a valid message or header and break
one thing, so they get past the first check and exercise the deeper ones.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from typing import Any

VALID_SDP_START = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def _junk_text(rng: random.Random, size: int) -> str:
    alphabet = "{}[]\":,0123456789abc\\\x00\u00e9\u2028\U0001f600 \t\r\n"
    return "".join(rng.choice(alphabet) for _ in range(size))


def _junk_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(8 if depth < 3 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 2**63, 1.5e308, -0.0, 7])
    if choice == 3:
        return _junk_text(rng, rng.randrange(0, 80))
    if choice == 4:
        return "x" * rng.choice([0, 65, 300])
    if choice == 5:
        return [_junk_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_junk_text(rng, 5): _junk_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _broken_join(rng: random.Random) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "join", "v": 1, "room": "fuzz", "name": "Fuzz"}
    field = rng.choice(["v", "room", "name", "drop"])
    if field == "drop":
        del message[rng.choice(["v", "room", "name"])]
    elif field == "v":
        message["v"] = rng.choice([0, 2, "1", True, None, 1.0001, [1]])
    elif field == "room":
        message["room"] = rng.choice(["", "a" * 65, "salle 1", "../etc", "é", 5, None, ["r"]])
    else:
        message["name"] = rng.choice(["", "   ", "a" * 65, "\x07bell", 3, None, {"n": 1}])
    return message


def signaling_frames(seed: int, count: int, *, joined: bool) -> Iterator[str]:
    """Frames that each deserve exactly one ``error`` reply from the server.

    ``joined`` says whether the socket has joined a room (so a second join is
    an error and SDP-carrying messages reach the SFU).
    """
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.randrange(10)
        if kind == 0:
            yield _junk_text(rng, rng.randrange(1, 200))
        elif kind == 1:
            yield json.dumps(rng.choice([[], [1, 2], 3, "join", None, 1.5]))
        elif kind == 2:
            yield json.dumps({"type": _junk_value(rng)} if rng.random() < 0.5 else
                             {"no_type": 1, "id": rng.randrange(100)})
        elif kind == 3:
            yield json.dumps({"type": rng.choice(["JOIN", "offer", "", "answer", "x" * 100]),
                              "id": "q"})
        elif kind == 4:
            message = _broken_join(rng)
            if joined and rng.random() < 0.3:
                message = {"type": "join", "v": 1, "room": "other", "name": "Twice"}
            yield json.dumps(message)
        elif kind == 5:
            yield json.dumps({"type": "publish_offer",
                              "sdp": rng.choice([None, 5, "", "hello", "x" * 1000])})
        elif kind == 6:
            garbage = VALID_SDP_START + _junk_text(rng, rng.randrange(0, 300))
            yield json.dumps({"type": "publish_offer", "sdp": garbage})
        elif kind == 7:
            yield json.dumps({"type": "subscribe_answer",
                              "revision": rng.choice([0, -1, 2**40, "1", None, 1.5, 9999]),
                              "sdp": VALID_SDP_START})
        elif kind == 8:
            yield json.dumps({"type": "ping", "id": rng.choice([[1], {"a": 1}, "i" * 65, 2**60,
                                                               True])})
        else:
            # a truncated valid message
            whole = json.dumps({"type": "join", "v": 1, "room": "fuzz", "name": "Fuzz"})
            yield whole[: rng.randrange(1, len(whole) - 1)]


def malformed_rtp(seed: int, count: int, ssrc: int, payload_type: int) -> Iterator[bytes]:
    """RTP packets (version 2, so they pass SRTP) whose header or payload is broken."""
    rng = random.Random(seed)
    seq = rng.randrange(65536)
    for _ in range(count):
        seq = (seq + rng.choice([1, 1, 2, 500, 30000])) & 0xFFFF
        kind = rng.randrange(8)
        pt = payload_type if rng.random() < 0.7 else rng.randrange(128)
        pkt_ssrc = ssrc if rng.random() < 0.7 else rng.getrandbits(32)
        first = 0x80
        body = b""
        if kind == 0:  # extension bit with a length running past the end
            first |= 0x10
            body = struct.pack("!HH", 0xBEDE, rng.randrange(2, 0xFFFF)) + b"\x10\x01"
        elif kind == 1:  # CSRC count larger than the packet
            first |= rng.randrange(1, 16)
        elif kind == 2:  # padding byte 0 or larger than the packet
            first |= 0x20
            body = rng.randbytes(rng.randrange(0, 20)) + bytes([rng.choice([0, 255])])
        elif kind == 3:  # one-byte extension whose element overruns the block
            first |= 0x10
            body = struct.pack("!HH", 0xBEDE, 1) + bytes([0x1F, 1, 2, 3])
        elif kind == 4:  # two-byte extension truncated
            first |= 0x10
            body = struct.pack("!HH", 0x1000, 1) + bytes([5, 200, 1, 1])
        elif kind == 5:  # garbage VP8 payload descriptor with every flag set
            body = bytes([0xFF, 0xFF, 0xFF]) + rng.randbytes(rng.randrange(0, 4))
        elif kind == 6:  # header only, padding bit set: empty payload
            first |= 0x20
            body = b"\x01"
        else:  # random payload of random length
            body = rng.randbytes(rng.randrange(0, 1200))
        second = (rng.random() < 0.5) << 7 | pt
        timestamp = rng.getrandbits(32)
        yield struct.pack("!BBHII", first, second, seq, timestamp, pkt_ssrc) + body


def malformed_rtcp(seed: int, count: int, media_ssrcs: list[int]) -> Iterator[bytes]:
    """RTCP compound packets with broken lengths, counts and feedback items."""
    rng = random.Random(seed)
    for _ in range(count):
        packet_type = rng.choice([200, 201, 202, 203, 204, 205, 206, 207, 210])
        count_field = rng.randrange(32)
        kind = rng.randrange(5)
        sender = rng.getrandbits(32)
        media = rng.choice(media_ssrcs) if media_ssrcs and rng.random() < 0.8 else 0
        if kind == 0:  # length field pointing past the end
            body = struct.pack("!II", sender, media)
            length = rng.randrange(3, 300)
        elif kind == 1:  # PLI / FIR / REMB / NACK with random feedback items
            packet_type = rng.choice([205, 206])
            count_field = rng.choice([1, 4, 15])
            fci = rng.randbytes(4 * rng.randrange(0, 6))
            if packet_type == 206 and count_field == 15 and rng.random() < 0.5:
                fci = b"REMB" + rng.randbytes(rng.randrange(0, 12))
            body = struct.pack("!II", sender, media) + fci
            length = len(body) // 4
        elif kind == 2:  # report count larger than the report blocks present
            packet_type = rng.choice([200, 201])
            body = struct.pack("!I", sender) + rng.randbytes(rng.choice([0, 20, 24]))
            length = len(body) // 4
        elif kind == 3:  # SDES / BYE with items past the end
            packet_type = rng.choice([202, 203])
            body = struct.pack("!I", sender) + bytes([1, 200]) + b"ab"
            length = len(body) // 4
        else:  # random body, consistent length
            body = struct.pack("!II", sender, media) + rng.randbytes(4 * rng.randrange(0, 8))
            length = len(body) // 4
        header = struct.pack("!BBH", 0x80 | count_field, packet_type, length & 0xFFFF)
        packet = header + body
        if len(packet) < 8:
            packet += b"\x00" * (8 - len(packet))
        yield packet
