"""The media fast paths: SRTP between the socket and the SFU, without aiortc's coroutines.

Sending (:class:`RtpWire`): protect a packet and hand it to the kernel, synchronously.

aiortc sends an RTP packet through three coroutines (``RTCDtlsTransport._send_rtp``
→ ``RTCIceTransport._send`` → aioice ``Connection.sendto`` → ``send_data``) and
pylibsrtp's ``Session.protect`` allocates a length cell and copies twice. At
fan-out that chain costs more than the encryption and the system call
together, so once DTLS is up the SFU writes through a :class:`RtpWire`
instead: one copy of header and payload into libsrtp's buffer, one
``srtp_protect`` call, one non-blocking ``sendto`` straight from that buffer
on (a duplicate of) the nominated ICE pair's socket. When the kernel's send
buffer is full the packet is dropped for this subscriber and counted, never
queued: NACK and the bandwidth estimate react to the loss, and a subscriber
that cannot keep up costs no memory.

What it keeps from aiortc: the same SRTP session (so RTCP that aiortc still
sends and the packets sent here share one crypto context and one rollover
counter), and the pair aioice nominated (re-read on every packet, so an ICE
pair change is followed at once; consent freshness still runs in aioice).
What it gives up: aiortc's transport byte counters, which nothing in visio reads.

Receiving (:class:`IncomingRtpTap`): aioice hands every datagram to a STUN
parser, then to an ``asyncio.Queue`` that a DTLS task drains, which decrypts
and awaits two more handlers: about as much CPU again as the SFU's own work
per publisher packet. Once the publisher's DTLS is up, the tap sits in the
socket's ``datagram_received``: SRTP (not SRTCP) is decrypted there and given
to the ingress synchronously; STUN, DTLS and RTCP still take aioice's and
aiortc's path, so consent freshness and RTCP handling are unchanged.

Like aiortc_bridge.py, this module knows private attributes of pinned
versions (aioice 0.13.0, pylibsrtp 1.0.0): :func:`wire_self_check` verifies them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import aioice
import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from pylibsrtp import Session
from pylibsrtp._binding import ffi, lib

logger = logging.getLogger(__name__)

SRTP_TRAILER_ROOM = 16 + 4  # the longest SRTP auth tag / AEAD tag (plus MKI headroom)
_CONNECTED = State.CONNECTED
NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 to 1970: aiortc's arrival clock is NTP ms


class RtpWire:
    """Protect-and-send for one subscriber's (bundled) DTLS transport."""

    __slots__ = ("_addr", "_buffer", "_capacity", "_cdata", "_context", "_dtls", "_length",
                 "_nominated", "_pair", "_session", "_socket", "_view", "dropped_backlog")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._session: Session | None = None
        self._context: Any = None
        self._cdata: Any = None
        self._buffer: Any = None
        self._capacity = 0
        self._length = ffi.new("int *")
        self._nominated: dict[int, Any] | None = None
        self._view = memoryview(b"")
        self._pair: Any = None
        self._socket: socket.socket | None = None
        self._addr: Any = None
        self.dropped_backlog = 0  # packets dropped because the socket's send buffer was full

    def send(self, header: bytes | bytearray, payload: bytes | memoryview) -> bool:
        """Send ``header + payload`` as one SRTP packet; False when it could not go out."""
        dtls = self._dtls
        stale = dtls._tx_srtp is not self._session or dtls._state is not _CONNECTED
        if stale and not self._bind_session():
            return False
        nominated = self._nominated
        if nominated is None:
            nominated = self._nominated = dtls.transport._connection._nominated
        pair = nominated.get(1)
        if pair is not self._pair and not self._adopt(pair):
            return False
        sock = self._socket
        if sock is None:  # closed, or the nominated pair went away: nowhere to send
            return False
        head = len(header)
        size = head + len(payload)
        if size > self._capacity:
            return False
        buffer = self._buffer
        buffer[0:head] = header
        buffer[head:size] = payload
        length = self._length
        length[0] = size
        if lib.srtp_protect(self._context, self._cdata, length):
            return False
        try:
            sock.sendto(self._view[:length[0]], self._addr)
        except BlockingIOError:
            self.dropped_backlog += 1
            return False
        except OSError:
            return False
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        """Protect (SRTCP) and send one RTCP packet; False when it could not go out.

        For the SFU's own sender reports, which describe media this wire sent:
        it uses the session and pair that ``send`` adopted for that media (so
        SRTP and SRTCP share one session's keys), and sends nothing before the
        first packet or once that session is stale.
        """
        sock, session = self._socket, self._session
        if sock is None or session is None or session is not self._dtls._tx_srtp:
            return False
        try:
            sock.sendto(session.protect_rtcp(packet), self._addr)
        except BlockingIOError:
            self.dropped_backlog += 1
            return False
        except (OSError, pylibsrtp.Error):
            return False
        return True

    def _adopt(self, pair: Any) -> bool:
        """Send on the pair aioice nominated (again after a pair change)."""
        self._release()
        transport = pair.protocol.transport if pair is not None else None
        if transport is None or transport.is_closing():
            return False
        # A duplicate of the ICE socket: a plain non-blocking sendto, without the
        # transport's own write buffer (which grows when the kernel's is full).
        self._socket = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        self._socket.setblocking(False)
        self._pair = pair
        self._addr = pair.remote_addr
        return True

    def close(self) -> None:
        """The connection is closing: release the socket, and never adopt a pair again
        (a consumer may still forward a packet before it is removed)."""
        self._release()
        self._nominated = {}

    def _release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._pair = None

    def _bind_session(self) -> bool:
        dtls = self._dtls
        session = dtls._tx_srtp
        if dtls._state is not _CONNECTED or session is None:
            return False
        self._session = session
        self._context = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._view = memoryview(session._buffer)
        self._capacity = len(session._buffer) - SRTP_TRAILER_ROOM
        return True


def wire_self_check() -> list[str]:
    """The private attributes :class:`RtpWire` reads; an empty list when all are there."""
    problems = []
    session = Session()
    for name in ("_srtp", "_cdata", "_buffer"):
        if not hasattr(session, name):
            problems.append(f"pylibsrtp.Session instance attribute {name} is missing")
    if not hasattr(lib, "srtp_protect"):
        problems.append("pylibsrtp's lib.srtp_protect is missing")
    connection = aioice.Connection(ice_controlling=False)
    for name in ("_nominated", "_protocols"):
        if not hasattr(connection, name):
            problems.append(f"aioice.Connection instance attribute {name} is missing")
    for name in ("srtp_unprotect", "srtp_unprotect_rtcp"):
        if not hasattr(lib, name):
            problems.append(f"pylibsrtp's lib.{name} is missing")
    pair_class = aioice.ice.CandidatePair
    if "protocol" not in pair_class.__init__.__code__.co_names:
        problems.append("aioice CandidatePair no longer keeps its protocol")
    if not isinstance(getattr(pair_class, "remote_addr", None), property):
        problems.append("aioice CandidatePair.remote_addr is missing")
    return problems


def _no_rtcp_reader(data: bytes) -> None:
    """No RTCP reader: SRTCP keeps aiortc's path (never called)."""


class IncomingRtpTap:
    """Decrypts SRTP (and, when asked, SRTCP) in the socket callback, hands it on
    synchronously.

    On a publisher's transport ``on_rtp`` gets the media. On a subscriber's,
    ``on_rtcp`` gets its RTCP: with browsers about ten transport-cc reports a
    second per subscriber, plus receiver reports, NACKs and REMB, and
    aioice's STUN attempt, its queue and the DTLS transport's task cost as
    much again as reading one.
    """

    __slots__ = ("_dtls", "_length", "_on_rtcp", "_on_rtp", "decrypt_failures",
                 "installed")

    def __init__(self, dtls: RTCDtlsTransport, on_rtp: Callable[[bytes, int], None],
                 on_rtcp: Callable[[bytes], None] | None = None) -> None:
        self._dtls = dtls
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._length = ffi.new("int *")
        self.installed = False
        self.decrypt_failures = 0

    def install(self) -> bool:
        """Tap every socket of the transport's ICE connection; only once DTLS is up."""
        dtls = self._dtls
        if self.installed or dtls._state is not _CONNECTED or dtls._rx_srtp is None:
            return self.installed
        for protocol in dtls.transport._connection._protocols:
            tapped = self._tapped(protocol.datagram_received)
            protocol.datagram_received = tapped  # type: ignore[method-assign,assignment]
        self.installed = True
        return True

    def _tapped(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        dtls = self._dtls
        length = self._length
        on_rtp = self._on_rtp
        rtcp_tapped = self._on_rtcp is not None
        on_rtcp = self._on_rtcp or _no_rtcp_reader
        unprotect = lib.srtp_unprotect
        unprotect_rtcp = lib.srtp_unprotect_rtcp
        clock = time.time

        def datagram_received(data: bytes, addr: Any) -> None:
            # SRTP and SRTCP: first byte 128-191 (RFC 7983); RTCP packet types are 192-223
            # (RFC 5761). Untapped RTCP keeps aiortc's path.
            if len(data) < 12 or not 127 < data[0] < 192 or dtls._state is not _CONNECTED:
                original(data, addr)
                return
            rtcp = 191 < data[1] < 224
            if rtcp and not rtcp_tapped:
                original(data, addr)
                return
            session = dtls._rx_srtp
            size = len(data)
            buffer = session._buffer
            if size > len(buffer):
                self.decrypt_failures += 1
                return
            buffer[0:size] = data
            length[0] = size
            if (unprotect_rtcp if rtcp else unprotect)(session._srtp[0], session._cdata, length):
                self.decrypt_failures += 1  # forged, replayed or from before a key change
                return
            if rtcp:
                on_rtcp(buffer[0:length[0]])
            else:
                on_rtp(buffer[0:length[0]], int((clock() + NTP_UNIX_OFFSET) * 1000))

        return datagram_received
