"""The subscriber pool's parent side: a child that stays silent is named, not an empty error."""

from __future__ import annotations

import asyncio
import sys

import pytest

from loadtest.subscriber_pool import SubscriberPool, readers


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


@pytest.mark.parametrize("count, sinks, expected", [
    (600, 580, [*range(10), *range(590, 600)]),  # first 10 on the publisher's worker, last 10
    (4, 3, [0]),  # one reader: the first
    (5, 0, [0, 1, 2, 3, 4]),  # no sinks: everyone reads
    (3, 7, [0]),  # more sinks asked than allowed: one still measures
    (30, 27, [0, 1, 29]),
])
def test_readers_are_the_first_and_the_last_to_join(count: int, sinks: int,
                                                      expected: list[int]) -> None:
    assert readers(count, sinks) == expected
