"""Loops that retry on Redis errors must still stop when cancelled."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """redis-py may turn a cancellation that lands mid-command into a connection error; a
    loop that catches those calls this first, so that cancelling its task still ends it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[None] | None, timeout: float = 5.0) -> bool:
    """Cancels ``task`` and waits for it, at most ``timeout`` seconds (shutdown stays bounded);
    True if it ended."""
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    return bool(done)
