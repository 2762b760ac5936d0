"""Reverse-proxy mode: believe ``X-Forwarded-For`` / ``X-Forwarded-Proto`` from trusted peers only.

Behind nginx, Caddy or Traefik every connection comes from the proxy. With
``--trusted-proxy CIDR`` a request *whose TCP peer is in one of those
networks* is seen with the client address and scheme the proxy reports:
rate limits count the real client, cookies are ``Secure`` and HSTS is sent
when the client used HTTPS. The same headers from anyone else are ignored,
so a client cannot spoof its address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Set on the original request (the one responses are prepared with) when the client used HTTPS.
FORWARDED_HTTPS = "visio.forwarded_https"


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             networks: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(forwarded_for: list[str], networks: Sequence[Network]) -> str | None:
    """The first address from the right that is not one of our proxies (None if unusable)."""
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    addresses = [_address(hop) for hop in hops]
    if not addresses or any(a is None for a in addresses):
        return None
    for address in reversed(addresses):
        if not _trusted(address, networks):
            return str(address)
    return str(addresses[0])


def forwarded_scheme(forwarded_proto: list[str]) -> str | None:
    """The scheme the nearest proxy reports, if it is http or https."""
    if not forwarded_proto:
        return None
    scheme = forwarded_proto[-1].split(",")[-1].strip().lower()
    return scheme if scheme in ("http", "https") else None


def install_trusted_proxies(app: web.Application, networks: Sequence[Network]) -> None:
    """The outermost middleware (before the rate limits, which must count real clients)."""
    if not networks:
        return

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _trusted(_address(request.remote or ""), networks):
            return await handler(request)
        remote = client_address(request.headers.getall("X-Forwarded-For", []), networks)
        scheme = forwarded_scheme(request.headers.getall("X-Forwarded-Proto", []))
        if scheme == "https":
            request[FORWARDED_HTTPS] = True
        if remote is None and scheme is None:
            return await handler(request)
        return await handler(request.clone(remote=remote or request.remote or "",
                                           scheme=scheme or request.scheme))

    app.middlewares.insert(0, forwarded)
