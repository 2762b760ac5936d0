"""The subscriber pool's parent side: a child that stays silent is named, not an empty error."""

from __future__ import annotations

import asyncio
import sys

import pytest

from loadtest.subscriber_pool import SubscriberPool


async def test_a_silent_pool_is_reported_as_such() -> None:
    pool = SubscriberPool("http://127.0.0.1:9", "room", 1, audio=False, transport_cc=False)
    silent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(10)", stdout=asyncio.subprocess.PIPE)
    pool._process = silent
    try:
        with pytest.raises(RuntimeError, match=r"did not reply within 0\.2 s"):
            await pool._read(0.2)
    finally:
        silent.kill()
        await silent.wait()


async def test_a_pool_that_exits_is_reported_with_its_status() -> None:
    pool = SubscriberPool("http://127.0.0.1:9", "room", 1, audio=False, transport_cc=False)
    pool._process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "raise SystemExit(3)", stdout=asyncio.subprocess.PIPE)
    with pytest.raises(RuntimeError, match="exited with 3"):
        await pool._read(5)
