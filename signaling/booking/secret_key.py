"""The key that signs join tokens and session cookies: from settings, or (development only)
generated once and kept in the data directory. Never a constant in the code."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "secret_key"
MIN_KEY_CHARS = 32


def resolve_secret_key(configured: str | None, data_dir: Path, development: bool) -> str:
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise ValueError(f"VISIO_SECRET_KEY must have at least {MIN_KEY_CHARS} characters "
                             "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        return configured
    if not development:
        raise ValueError("production mode needs VISIO_SECRET_KEY (or --secret-key): "
                         "`python -c 'import secrets; print(secrets.token_hex(32))'`")
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key
