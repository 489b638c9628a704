from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from decimal import Decimal

import pytest

from cairn_analytics import InvalidEventError
from cairn_analytics.serialize import encode, format_timestamp, parse_rfc3339, to_json_value, to_utc


class Plan(enum.Enum):
    PRO = "pro"


class Level(enum.IntEnum):
    HIGH = 3


def test_converts_common_python_values() -> None:
    u = uuid.UUID("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")
    value = {
        "s": "héllo 世界 🚀",
        "i": 42,
        "big": 2**53 + 1,
        "f": 1.5,
        "b": True,
        "n": None,
        "aware": dt.datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "naive": dt.datetime(2026, 1, 31, 12, 0, 0),
        "date": dt.date(2026, 1, 31),
        "time": dt.time(8, 30),
        "dec_int": Decimal("10"),
        "dec": Decimal("10.25"),
        "uuid": u,
        "enum": Plan.PRO,
        "int_enum": Level.HIGH,
        "tuple": (1, 2),
        "set": {7},
        "frozen": frozenset(),
        "bytes": "ü".encode(),
        "nested": {"list": [1, {"deep": [None, 2.5]}], 5: "int key"},
    }
    assert to_json_value(value) == {
        "s": "héllo 世界 🚀",
        "i": 42,
        "big": 2**53 + 1,
        "f": 1.5,
        "b": True,
        "n": None,
        "aware": "2026-01-31T12:00:00.123456+02:00",
        "naive": "2026-01-31T12:00:00",
        "date": "2026-01-31",
        "time": "08:30:00",
        "dec_int": 10,
        "dec": 10.25,
        "uuid": str(u),
        "enum": "pro",
        "int_enum": 3,
        "tuple": [1, 2],
        "set": [7],
        "frozen": [],
        "bytes": "ü",
        "nested": {"list": [1, {"deep": [None, 2.5]}], "5": "int key"},
    }
    assert type(to_json_value(True)) is bool
    assert type(to_json_value(Level.HIGH)) is int


def test_copies_so_later_changes_do_not_leak() -> None:
    inner = [1]
    original = {"a": inner}
    copy = to_json_value(original)
    inner.append(2)
    original["b"] = 1
    assert copy == {"a": [1]}


def test_shared_but_not_circular_values_are_fine() -> None:
    shared = {"x": 1}
    assert to_json_value({"a": shared, "b": [shared, shared]}) == {"a": {"x": 1}, "b": [{"x": 1}, {"x": 1}]}


def _cycle_dict() -> dict:
    d: dict = {"k": 1}
    d["self"] = d
    return d


def _cycle_list() -> list:
    lst: list = [1]
    lst.append({"again": lst})
    return lst


@pytest.mark.parametrize(
    "value, where",
    [
        ({"x": float("nan")}, "properties['x']"),
        ({"x": [1, float("inf")]}, "properties['x'][1]"),
        ({"x": Decimal("NaN")}, "properties['x']"),
        ({"x": object()}, "properties['x']"),
        ({"x": [complex(1, 2)]}, "properties['x'][0]"),
        ({"x": b"\xff\xfe"}, "properties['x']"),
        ({"x": "bad \ud800 text"}, "properties['x']"),
        ({"bad \udfff key": 1}, "a key of properties"),
        ({(1, 2): "tuple key"}, "properties"),
        ({"c": _cycle_dict()}, "circular"),
        ({"c": _cycle_list()}, "circular"),
    ],
)
def test_refuses_what_json_cannot_hold_and_names_where(value: object, where: str) -> None:
    with pytest.raises(InvalidEventError) as e:
        to_json_value(value)
    assert where in str(e.value)


def test_refuses_absurd_nesting_cleanly() -> None:
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidEventError, match="nested too deeply"):
        to_json_value({"deep": deep})


def test_encode_is_compact_utf8_json() -> None:
    raw = encode({"a": "é", "b": [1, 2]})
    assert raw == '{"a":"é","b":[1,2]}'.encode()
    assert json.loads(raw) == {"a": "é", "b": [1, 2]}


def test_format_timestamp_is_utc_with_truncated_milliseconds() -> None:
    t = dt.datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert format_timestamp(t) == "2026-02-01T04:59:59.999Z"
    assert format_timestamp(dt.datetime(2026, 1, 1, 0, 0, 0, 7_000)) == "2026-01-01T00:00:00.007Z"
    assert format_timestamp(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)) == "2026-01-01T00:00:00.000Z"


def test_to_utc_accepts_datetimes_and_rfc3339_text() -> None:
    utc = dt.timezone.utc
    assert to_utc(dt.datetime(2026, 1, 1, 12)) == dt.datetime(2026, 1, 1, 12, tzinfo=utc)  # naive = UTC
    assert to_utc(dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == dt.datetime(
        2026, 1, 1, 11, tzinfo=utc
    )
    assert to_utc("2026-01-01T12:00:00Z") == dt.datetime(2026, 1, 1, 12, tzinfo=utc)
    assert to_utc("2026-01-01T12:00:00.5+02:00") == dt.datetime(2026, 1, 1, 10, 0, 0, 500_000, tzinfo=utc)
    assert to_utc("2026-01-01t12:00:00.1234567z") == dt.datetime(2026, 1, 1, 12, 0, 0, 123_456, tzinfo=utc)


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "2026-01-01", "2026-01-01T12:00:00", "2026-01-01T12:00:00.Z", "1969-12-31T23:59:59Z", 1700000000],
)
def test_to_utc_refuses_other_values(bad: object) -> None:
    with pytest.raises(InvalidEventError):
        to_utc(bad)  # type: ignore[arg-type]


def test_parse_rfc3339_needs_an_offset() -> None:
    assert parse_rfc3339("2026-01-01T00:00:00") is None
    assert parse_rfc3339("2026-01-01T00:00:00+00:00") is not None
