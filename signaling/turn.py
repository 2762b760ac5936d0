"""Time-limited TURN credentials (the "TURN REST API" scheme, coturn's ``use-auth-secret``).

visio and the TURN server share a secret. For each signaling socket visio
makes a username ``"<expiry unix time>:<user>"`` and a password
``base64(HMAC-SHA1(secret, username))``; coturn recomputes the password from
the username and refuses it once the expiry has passed. Nothing is stored,
and a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

DEFAULT_TTL = 12 * 3600  # seconds a credential stays valid: longer than any school day meeting


def rest_credential(secret: str, user: str, ttl: int,
                    now: float | None = None) -> tuple[str, str]:
    """(username, credential) valid for ``ttl`` seconds from ``now``."""
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def with_turn_credentials(servers: list[dict[str, Any]], secret: str | None,
                          ttl: int = DEFAULT_TTL) -> list[dict[str, Any]]:
    """The browser's ICE servers for one socket: fresh credentials on every TURN entry.

    Without a secret the configured (static) servers are returned as they are.
    The user part is random: it ties a credential to no person.
    """
    if secret is None:
        return servers
    username, credential = rest_credential(secret, f"visio-{secrets.token_hex(6)}", ttl)
    result: list[dict[str, Any]] = []
    for server in servers:
        urls = server["urls"]
        if any(str(url).startswith(("turn:", "turns:")) for url in urls):
            server = {**server, "username": username, "credential": credential}
        result.append(server)
    return result
