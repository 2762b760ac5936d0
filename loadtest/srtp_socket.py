"""The light participant's socket after the handshake: SRTP read and decrypted in place.

``SocketReader`` takes the selected ICE pair's UDP socket over from uvloop
and reads it with ``recv_into``; ``ReceivePoller`` puts every such socket of
one event loop behind a single epoll set; ``SrtpDemux`` hands RTP and RTCP
to ``loadtest.rtp_receive.RtpCounter``, decrypting them in place
(``srtp_unprotect`` through pylibsrtp's cffi binding) when the payload is
needed or sampled, and STUN and DTLS to aioice.
``DirectReceive`` is the fallback when no pair is selected: uvloop keeps the
socket and only the datagram callback is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import weakref
from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp._binding import ffi, lib

from loadtest.rtp_receive import RtpCounter

MAX_DATAGRAM = 2048  # bytes; a bigger datagram takes aiortc's path
RECEIVE_BUFFER = 1 << 20  # bytes asked for each taken-over socket (net.core.rmem_max caps it)


class Scratch:
    """A datagram's buffer, its cffi pointer and libsrtp's length cell.

    Handling a datagram is synchronous (read, decrypt, count, done), so all
    the sockets of one event loop share one: it stays in the CPU's cache
    where one buffer per participant would not.
    """

    def __init__(self) -> None:
        self.buffer = bytearray(MAX_DATAGRAM)
        self.pointer = ffi.from_buffer(self.buffer)
        self.length = ffi.new("int *")


class SrtpDemux:
    """Hands one SRTP datagram in a reused buffer to an ``RtpCounter``, decrypting in place.

    ``srtp_unprotect`` / ``srtp_unprotect_rtcp`` are called straight through
    pylibsrtp's cffi binding (its ``Session.unprotect`` allocates an ``int *``
    and a result per call). SRTP leaves the RTP header in clear and decrypts
    the payload in place, so the buffer then holds the whole plain packet.
    An RTP packet is decrypted only when ``RtpCounter.count`` asks for it
    (``unprotect``: a frame's first packet, one in 16, anything unusual; see
    ``loadtest.rtp_receive``); the others are counted from their header.
    SRTCP goes to ``RtpCounter.on_rtcp`` (sender reports: aiortc's path costs
    ~150 µs for each, through a queue, a task and statistics objects). STUN
    (consent checks) and DTLS (RFC 7983: first byte not 128-191) go to
    ``fallback``, aioice's own handler.
    """

    def __init__(self, session: pylibsrtp.Session, counter: RtpCounter,
                 fallback: Callable[[bytes, Any], None],
                 scratch: Scratch | None = None) -> None:
        srtp = getattr(session, "_srtp", None)
        if srtp is None:
            raise RuntimeError("pylibsrtp.Session has no _srtp context: its internals changed")
        self._session = session  # owns the libsrtp context
        self._context = srtp[0]
        scratch = scratch or Scratch()
        self.buffer, self._pointer, self._length = scratch.buffer, scratch.pointer, scratch.length
        self._counter = counter
        self._count = counter.count
        self._fallback = fallback
        self.rejected = 0  # failed authentication or replay check (duplicates)
        self.verified = 0  # RTP packets authenticated and decrypted (the others: header only)

    def handle(self, size: int, addr: Any) -> None:
        """The datagram now in ``buffer[:size]``."""
        buffer = self.buffer
        if not 127 < buffer[0] < 192:
            self._fallback(bytes(buffer[:size]), addr)
            return
        if 191 < buffer[1] < 224:  # RTCP (RFC 5761: packet types 192-223)
            length = self._length
            length[0] = size
            if lib.srtp_unprotect_rtcp(self._context, self._pointer, length):
                self.rejected += 1
            else:
                self._counter.on_rtcp(buffer, length[0])
            return
        self._count(buffer, size, self)  # calls ``unprotect`` when the payload is needed

    def unprotect(self, size: int) -> int:
        """``srtp_unprotect`` on the RTP packet in ``buffer[:size]``: its plain size, or -1."""
        length = self._length
        length[0] = size
        if lib.srtp_unprotect(self._context, self._pointer, length):
            self.rejected += 1
            return -1
        self.verified += 1
        plain: int = length[0]
        return plain


class DirectReceive(SrtpDemux):
    """A datagram protocol's ``datagram_received`` replaced: uvloop hands each datagram."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        size = len(data)
        if size > MAX_DATAGRAM:
            self._fallback(data, addr)
            return
        self.buffer[:size] = data
        self.handle(size, addr)


def _original(module: str, name: str) -> Any:
    """``module.name`` as Python made it: locust workers run under gevent, whose monkey
    patching replaces ``socket.socket`` with a cooperative one (useless on this asyncio
    thread) and removes ``select.epoll``."""
    try:
        from gevent import monkey
    except ImportError:
        return getattr(importlib.import_module(module), name)
    return monkey.get_original(module, name)


class SocketReader(SrtpDemux):
    """The ICE socket taken over after the handshake: read with ``recv_into``, in place.

    uvloop builds a ``bytes`` and an address tuple for every datagram and
    calls the protocol with them; here a duplicate of the socket's file
    descriptor is read by this object straight into the SRTP buffer, and
    uvloop's transport is closed (the socket lives on through the duplicate).
    aioice keeps its protocol object: it sends through this object
    (``sendto``) and gets STUN and DTLS datagrams from it, with the selected
    pair's remote address. The process's ``ReceivePoller`` says when to read.
    """

    def __init__(self, protocol: Any, remote_addr: tuple[str, int],
                 session: pylibsrtp.Session, counter: RtpCounter) -> None:
        # Everything that can fail happens before uvloop's transport is let go.
        self._poller = ReceivePoller.for_loop()
        super().__init__(session, counter, protocol.datagram_received, self._poller.scratch)
        self._protocol = protocol
        self._remote_addr = remote_addr
        self._loop = asyncio.get_running_loop()
        uvloop_transport = protocol.transport
        fileno = uvloop_transport.get_extra_info("socket").fileno()
        self._socket = _original("socket", "socket")(fileno=os.dup(fileno))
        self._socket.setblocking(False)
        self._recv_into = self._socket.recv_into
        # A load generator descheduled for a moment on a busy host must not turn its own
        # stall into loss charged to the SFU: ~2 s of video instead of the default ~0.6 s.
        with contextlib.suppress(OSError):
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._closed = False
        uvloop_transport.set_protocol(asyncio.DatagramProtocol())  # its close is not aioice's
        protocol.transport = self
        uvloop_transport.close()
        self._poller.add(self._socket.fileno(), self.read_one)

    def read_one(self) -> None:
        """One datagram (the poller calls again while the socket stays readable)."""
        buffer = self.buffer
        try:
            size = self._recv_into(buffer)
        except OSError:  # EAGAIN (raced), or an ICMP error reported on the socket
            return
        if 127 < buffer[0] < 192 and not 191 < buffer[1] < 224:  # RTP: ``handle``'s usual case
            self._count(buffer, size, self)
        else:
            self.handle(size, self._remote_addr)

    # --- the part of asyncio.DatagramTransport aioice uses
    def sendto(self, data: bytes, addr: Any = None) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._socket.sendto(data, addr or self._remote_addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._socket.getsockname()
        return self._socket if name == "socket" else default

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._poller.remove(self._socket.fileno())
        self._socket.close()
        self._loop.call_soon(self._protocol.connection_lost, None)


class ReceivePoller:
    """Every taken-over socket of one event loop behind a single epoll set.

    uvloop wakes up for the epoll set's descriptor; one callback then asks the
    set which sockets are readable and reads one datagram from each, again
    until none is (level-triggered: a socket with more waiting stays ready).
    With hundreds of participants a wake-up finds many sockets with one or
    two datagrams each; one uvloop callback per socket and a failed
    ``recv`` per socket to learn it is empty would cost more than the packet.

    The set is read ``COALESCE_S`` (1 ms) after it turns readable, not at
    once: the SFU sends a frame's packets to each subscriber in turn, so
    reading at once wakes the process for every datagram or two, and the
    wake-ups (epoll, context switches, the loop's own turn) cost more than
    the packets. ``visio bench forward --subscribers 50``: 11.8-14.3 µs of
    client CPU per received packet at once, 8.8-9.0 µs with 1 ms
    (docs/benchmarks.md). The price is arrival times late by up to 1 ms,
    which adds ≈ 0.3 ms to the jitter a subscriber reports and to the
    transport-cc arrival times it sends: small next to a Wi-Fi tablet's.
    ``VISIO_RECEIVE_COALESCE_MS=0`` restores reading at once.

    After that one read the set's descriptor is watched again at once. An
    earlier version read again ``COALESCE_S`` later while datagrams kept
    coming, to save the ``epoll_ctl`` of watching the nested set again; but
    that read almost always found the burst over and cost a timer wake-up
    of its own, and a wake-up from idle costs this VM 100-150 µs
    (``visio bench floor``: ``wakeup_us``) against a few for ``epoll_ctl``:
    8.79 → 8.27 µs per received packet, medians of 4 alternating pairs of
    ``visio bench forward --subscribers 50`` (docs/benchmarks.md).
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReceivePoller] = (
        weakref.WeakKeyDictionary())
    MAX_ROUNDS = 64  # then back to the event loop, so timers and signaling run
    # Read this long after the set turns readable; 0: at once. See the class docstring.
    COALESCE_S = float(os.environ.get("VISIO_RECEIVE_COALESCE_MS", "1")) / 1000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.scratch = Scratch()  # one datagram buffer for every socket of this loop
        self._epoll = _original("select", "epoll")()
        self._readers: dict[int, Callable[[], None]] = {}
        self.wakeups = 0  # times the set was read
        self.empty_reads = 0  # reads that found no socket readable
        loop.add_reader(self._epoll.fileno(), self._ready)

    @classmethod
    def for_loop(cls) -> ReceivePoller:
        loop = asyncio.get_running_loop()
        poller = cls._by_loop.get(loop)
        if poller is None:
            poller = cls._by_loop[loop] = cls(loop)
        return poller

    def add(self, fileno: int, read_one: Callable[[], None]) -> None:
        self._readers[fileno] = read_one
        self._epoll.register(fileno, _original("select", "EPOLLIN"))

    def remove(self, fileno: int) -> None:
        if self._readers.pop(fileno, None) is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fileno)
        if not self._readers:  # the last one: the next reader of this loop starts afresh
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            if self._by_loop.get(self._loop) is self:
                del self._by_loop[self._loop]

    def _ready(self) -> None:
        """The epoll set turned readable: read it a moment later, once more has arrived."""
        if self.COALESCE_S <= 0:
            self._drain()
            return
        self._loop.remove_reader(self._epoll.fileno())
        self._loop.call_later(self.COALESCE_S, self._drain_and_rearm)

    def _drain_and_rearm(self) -> None:
        if not self._readers:  # the last socket left meanwhile: the set is closed
            return
        self._drain()
        if self._readers:  # (a reader may have closed on what it read)
            self._loop.add_reader(self._epoll.fileno(), self._ready)

    def _drain(self) -> None:
        """Reads until no socket is readable (or MAX_ROUNDS)."""
        self.wakeups += 1
        poll, readers = self._epoll.poll, self._readers
        readable = 0
        for _ in range(self.MAX_ROUNDS):
            events = poll(0)
            if not events:
                break
            readable += len(events)
            for fileno, _mask in events:
                read_one = readers.get(fileno)
                if read_one is not None:
                    read_one()
        if not readable:
            self.empty_reads += 1
