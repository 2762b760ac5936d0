"""The shared periodic timer: who is called on which tick, and that it stops by itself."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from sfu.ticker import Ticker

TICK = 0.005


async def _ticks(ticker: Ticker, count: int) -> None:
    """Wait until ``count`` more ticks have run."""
    target = ticker.ticks + count
    for _ in range(count * 40):
        if ticker.ticks >= target:
            return
        await asyncio.sleep(TICK / 2)
    raise AssertionError(f"only {ticker.ticks} of {target} ticks ran")


async def test_periodic_callbacks_are_spread_over_their_period() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop(), batch=1)
    calls: dict[str, list[int]] = {name: [] for name in "abcd"}
    for name in "abc":
        ticker.every(3, lambda name=name: calls[name].append(ticker.ticks))
    ticker.every(1, lambda: calls["d"].append(ticker.ticks))
    await _ticks(ticker, 9)
    ticker.close()
    assert calls["d"] == list(range(1, len(calls["d"]) + 1))  # every tick
    for name in "abc":
        ticks = calls[name]
        assert len(ticks) >= 3
        assert {b - a for a, b in itertools.pairwise(ticks)} == {3}
    # three callbacks of period 3, one per batch: one per tick, never together
    assert len({ticks[0] % 3 for ticks in (calls["a"], calls["b"], calls["c"])}) == 3


async def test_a_batch_shares_a_tick_and_ticks_without_work_are_slept_through() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop(), batch=2)
    calls: list[list[int]] = [[] for _ in range(4)]
    for i in range(4):
        ticker.every(10, lambda i=i: calls[i].append(ticker.ticks))
    await asyncio.sleep(TICK * 31)
    ticker.close()
    phases = [{tick % 10 for tick in ticks} for ticks in calls]
    assert all(len(ticks) >= 2 for ticks in calls)
    assert phases[0] == phases[1] and phases[2] == phases[3] and phases[0] != phases[2]
    # two ticks with work in every ten: the timer went off for those only
    assert ticker.wakeups <= 2 * (ticker.ticks // 10 + 1)


async def test_work_registered_while_the_timer_sleeps_long_is_not_late() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop())
    ticker.every(1000, lambda: None)  # the timer now sleeps for 1000 ticks
    soon: list[int] = []
    ticker.soon(lambda: soon.append(ticker.ticks))
    every: list[int] = []
    ticker.every(2, lambda: every.append(ticker.ticks))
    await asyncio.sleep(TICK * 8)
    ticker.close()
    assert len(soon) == 1 and len(every) >= 2


async def test_cancel_stops_one_callback_and_an_empty_ticker_stops_its_timer() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop())
    kept: list[int] = []
    dropped: list[int] = []
    cancel_dropped = ticker.every(1, lambda: dropped.append(ticker.ticks))
    cancel_kept = ticker.every(1, lambda: kept.append(ticker.ticks))
    await _ticks(ticker, 2)
    cancel_dropped()
    cancel_dropped()  # twice is harmless
    before = len(dropped)
    await _ticks(ticker, 3)
    assert len(dropped) == before and len(kept) >= 5
    assert ticker.registered == 1
    cancel_kept()
    await asyncio.sleep(TICK * 3)
    assert not ticker.running and ticker.registered == 0


async def test_soon_runs_once_at_the_next_tick_however_often_asked() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop())
    calls: list[int] = []

    def send() -> None:
        calls.append(ticker.ticks)

    ticker.soon(send)
    ticker.soon(send)
    await asyncio.sleep(TICK * 4)
    assert calls == [1]
    assert not ticker.running  # nothing periodic: the timer stopped after the one call


async def test_a_failing_callback_is_counted_and_the_others_still_run() -> None:
    ticker = Ticker(TICK, asyncio.get_running_loop())
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    ticker.every(1, broken)
    ticker.every(1, lambda: calls.append(1))
    await _ticks(ticker, 3)
    ticker.close()
    assert ticker.failures >= 3 and "boom" in ticker.last_failure
    assert len(calls) >= 3


async def test_one_ticker_per_loop_and_interval() -> None:
    first = Ticker.for_loop(TICK)
    assert Ticker.for_loop(TICK) is first
    assert Ticker.for_loop(TICK * 2) is not first
    with pytest.raises(ValueError):
        first.every(0, lambda: None)
