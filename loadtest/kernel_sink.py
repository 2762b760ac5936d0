"""Subscribers whose media the kernel drops: fan-out load without a reader's CPU.

On a 2-core machine the load generator shares the cores it measures: a
light subscriber costs ~9 µs of CPU per received packet, so 400 of them at
156 packets/s each take 0.6 core from the SFU under test. A *sink* is a
subscriber that joined, negotiated ICE, DTLS and SRTP and received video
like the others, and then attached a socket filter that drops every
RTP/RTCP datagram (RFC 7983: first byte 128-191) before it is queued.
Nothing wakes the process for them; STUN (consent checks, first byte 0-3)
and DTLS still pass, so the SFU keeps the connection alive as with any
browser.

What the SFU does for a sink is unchanged: it forwards every packet,
protects it and sends it (``sendto`` succeeds: the filter runs on the
receiving side of the loopback delivery, inside the SFU's send call, and
is cheaper than queueing and waking a reader). What the sink cannot say:
whether packets arrived, and its RTCP (receiver reports, NACKs, estimates)
stops, so the SFU keeps its default send budget for it. A run therefore
keeps some subscribers reading and measuring loss; see
``loadtest.bench_forward``'s ``--sinks``.

The filter is classic BPF (``SO_ATTACH_FILTER``) run on a UDP socket's
datagrams, where offset 0 is the UDP header and offset 8 the payload's
first byte.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # linux/asm-generic/socket.h
UDP_HEADER = 8  # bytes before the payload in what a UDP socket filter sees
ACCEPT = 0xFFFFFFFF  # keep the whole datagram
DROP = 0

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: jt/jf skip that many instructions
_LOAD_BYTE = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = payload byte at k
_JUMP_IF_AT_LEAST = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RETURN = 0x06  # BPF_RET | BPF_K
_INSTRUCTION = struct.Struct("HBBI")
_PROGRAM = (
    (_LOAD_BYTE, 0, 0, UDP_HEADER),  # A = first byte of the datagram's payload
    (_JUMP_IF_AT_LEAST, 0, 2, 128),  # below 128 (STUN, DTLS): accept
    (_JUMP_IF_AT_LEAST, 1, 0, 192),  # 192 and above (not RTP/RTCP): accept
    (_RETURN, 0, 0, DROP),           # 128-191: RTP or RTCP, dropped
    (_RETURN, 0, 0, ACCEPT),
)


def drop_media_in_kernel(sock: socket.socket) -> None:
    """Attach the filter to ``sock`` (and so to every descriptor of the same socket).

    Raises ``OSError`` where the kernel refuses it (non-Linux, seccomp).
    """
    code = b"".join(_INSTRUCTION.pack(*instruction) for instruction in _PROGRAM)
    instructions = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment
    program = struct.pack("HP", len(_PROGRAM), ctypes.addressof(instructions))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)  # the kernel copies it
