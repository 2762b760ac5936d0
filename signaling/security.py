"""Security headers on every response: CSP, framing, referrer, MIME sniffing, HSTS.

The web client and the booking pages load only their own files: no inline
script, no inline style attribute (the booking calendar sets its geometry
through the CSSOM in ``booking.js``), so the policy can say ``'self'`` and
nothing else. Meeting links carry join tokens in their query string: no
page ever sends a ``Referer``.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from signaling.proxies import FORWARDED_HTTPS

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",  # the booking page's QR code is inline SVG, not an image
    "media-src 'self' blob:",
    "connect-src 'self'",  # fetch and the signaling WebSocket (ws: / wss: on the same host)
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HSTS = "max-age=31536000"  # one year; no includeSubDomains: the operator's other hosts are theirs

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # browsers without frame-ancestors
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self), "
                          "geolocation=(), payment=(), usb=()",
}


def security_headers(request: web.Request) -> CIMultiDict[str]:
    """The headers for a response to this request (HSTS only over HTTPS)."""
    headers = CIMultiDict(SECURITY_HEADERS)
    if request.secure or request.get(FORWARDED_HTTPS):
        headers["Strict-Transport-Security"] = HSTS
    return headers


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(security_headers(request))


def install_security_headers(app: web.Application) -> None:
    """Adds the headers to every response, pages, files, errors and API alike."""
    app.on_response_prepare.append(_add_headers)
