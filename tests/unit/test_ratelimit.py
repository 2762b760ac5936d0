"""Token buckets and rate specifications (signaling.ratelimit), on a fake clock."""

from __future__ import annotations

import pytest

from signaling.ratelimit import Rate, RateLimiter, TokenBucket, parse_rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "rate"), [
    ("120/min", Rate(120, 60.0)), ("10/s", Rate(10, 1.0)), ("1000/h", Rate(1000, 3600.0)),
    ("30/10s", Rate(30, 10.0)), (" 5 / MIN ", Rate(5, 60.0)), ("off", None), ("0", None)])
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["120", "abc/min", "10/fortnight", "-1/s", "5/0s"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_rate_prints_as_it_parses() -> None:
    for text in ("120/min", "10/s", "1000/h", "30/10s"):
        assert str(parse_rate(text)) == text


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(capacity=3, rate=0.5, tokens=3, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(2.0)  # one token every 2 s
    assert bucket.take(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0) == 0.0
    assert bucket.take(100.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # capped


def test_limiter_keeps_one_bucket_per_address() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(2, 60.0), clock=clock)
    assert limiter.check("198.51.100.7") == 0.0
    assert limiter.check("198.51.100.7") == 0.0
    assert limiter.check("198.51.100.7") == pytest.approx(30.0)
    assert limiter.check("203.0.113.9") == 0.0  # another school is not affected
    assert limiter.refused == 1
    clock.now += 30
    assert limiter.check("198.51.100.7") == 0.0


def test_limiter_forgets_idle_addresses_first_then_the_least_recent() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(2, 1.0), max_keys=3, clock=clock)
    limiter.check("a")
    limiter.check("b")
    clock.now += 10  # a and b are full again: idle
    limiter.check("c")
    limiter.check("c")
    limiter.check("d")  # at capacity: a and b are forgotten, c is kept
    assert len(limiter) == 2
    assert limiter.check("c") > 0  # c's bucket (empty) survived
    limiter.check("e")
    limiter.check("f")  # at capacity with no idle bucket: the least recent (d) goes
    assert len(limiter) == 3
