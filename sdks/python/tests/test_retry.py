from __future__ import annotations

import datetime as dt

import pytest

from cairn_analytics.retry import MAX_RETRY_AFTER, Backoff, is_retryable, parse_retry_after


@pytest.mark.parametrize("status", [None, 429, 500, 502, 503, 504, 599])
def test_retryable(status: int) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 408, 413, 422])
def test_not_retryable(status: int) -> None:
    assert not is_retryable(status)


def test_exponential_ceiling_with_cap() -> None:
    b = Backoff(base=0.5, max_delay=10.0)
    assert [b.ceiling(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.ceiling(10_000) == 10.0


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    assert Backoff(0.5, 10.0, rng=lambda: 0.0).delay(3) == 0.0
    assert Backoff(0.5, 10.0, rng=lambda: 0.999).delay(3) == pytest.approx(0.999 * 4.0)
    real = Backoff(0.5, 10.0)
    samples = [real.delay(2) for _ in range(2000)]
    assert all(0.0 <= s <= 2.0 for s in samples)
    # Spread over the whole range, not clustered at the ceiling (plain exponential backoff).
    assert min(samples) < 0.2 and max(samples) > 1.8


def test_retry_after_wins_and_is_capped() -> None:
    b = Backoff(0.5, 10.0, rng=lambda: 0.5)
    assert b.delay(0, retry_after=3.0) == 3.0
    assert b.delay(4, retry_after=0.0) == 0.0
    assert b.delay(0, retry_after=10_000.0) == MAX_RETRY_AFTER


def test_parse_retry_after() -> None:
    now = dt.datetime(2026, 1, 31, 12, 0, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("Sat, 31 Jan 2026 12:00:07 GMT", now=now) == 7.0
    assert parse_retry_after("Sat, 31 Jan 2026 11:00:00 GMT", now=now) == 0.0
    for bad in (None, "", "soon", "-1", "nan"):
        assert parse_retry_after(bad) is None
