from __future__ import annotations

import re
import time
import uuid

import pytest

import cairn_analytics.uuid7 as uuid7_mod
from cairn_analytics.uuid7 import timestamp_ms, uuid7, uuid7_str

UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_version_variant_and_text_form() -> None:
    for _ in range(1000):
        u = uuid7()
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert (u.int >> 62) & 0b11 == 0b10
        assert UUID_TEXT.match(str(u)), str(u)
    assert UUID_TEXT.match(uuid7_str())


def test_carries_the_current_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= timestamp_ms(u) <= after


def test_strictly_increasing_and_unique() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    ints = [u.int for u in ids]
    assert all(a < b for a, b in zip(ints, ints[1:]))
    # Text sorts the same way as the numbers (what ClickHouse and people see).
    texts = [str(u) for u in ids]
    assert texts == sorted(texts)


def test_random_bits_differ() -> None:
    # 62 random bits per id: two ids made in the same millisecond still differ there.
    a, b = uuid7(), uuid7()
    assert (a.int & ((1 << 62) - 1)) != (b.int & ((1 << 62) - 1))


def test_clock_going_back_or_stuck_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time_ns() + 10 * 60 * 1_000_000_000]  # ahead of every id made so far
    monkeypatch.setattr(uuid7_mod.time, "time_ns", lambda: now[0])
    first = uuid7()
    now[0] -= 5_000_000_000  # the clock steps back 5 s
    later = [uuid7() for _ in range(10)]
    assert all(first.int < u.int for u in later)
    assert all(timestamp_ms(u) == timestamp_ms(first) for u in later)


def test_more_than_4096_in_one_millisecond_borrow_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = time.time_ns() + 20 * 60 * 1_000_000_000
    monkeypatch.setattr(uuid7_mod.time, "time_ns", lambda: fixed)
    ids = [uuid7() for _ in range(10_000)]
    ints = [u.int for u in ids]
    assert all(a < b for a, b in zip(ints, ints[1:]))
    assert timestamp_ms(ids[0]) == fixed // 1_000_000
    assert timestamp_ms(ids[-1]) > fixed // 1_000_000
