"""What capture() turns its arguments into, and what it refuses before queueing anything."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from cairn_analytics import InvalidEventError, VERSION
from cairn_analytics.events import build_event
from cairn_analytics.uuid7 import timestamp_ms


def wire(*args: object, **kwargs: object) -> dict:
    return json.loads(build_event(*args, **kwargs).body)  # type: ignore[arg-type]


def test_the_event_has_capture_shape() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    q = build_event("signed_up", "user-1", {"plan": "pro"})
    e = json.loads(q.body)
    assert set(e) == {"event", "distinct_id", "properties", "timestamp", "uuid"}
    assert e["event"] == "signed_up" and q.event == "signed_up"
    assert e["distinct_id"] == "user-1"
    assert e["properties"] == {"plan": "pro", "$lib": "cairn-python", "$lib_version": VERSION}
    assert e["uuid"] == q.uuid
    u = uuid.UUID(e["uuid"])
    assert u.version == 7
    # RFC 3339, UTC, milliseconds; close to the uuid's own time.
    assert len(e["timestamp"]) == 24 and e["timestamp"].endswith("Z") and e["timestamp"][19] == "."
    ts = dt.datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(milliseconds=1) <= ts <= dt.datetime.now(dt.timezone.utc)
    assert abs(int(ts.timestamp() * 1000) - timestamp_ms(u)) < 1000


def test_given_uuid_and_timestamp_are_kept() -> None:
    given = "0192F3C4-5D6E-7F80-9A1B-2C3D4E5F6A7B"
    e = wire("x", "u", None, dt.datetime(2026, 1, 31, 13, 0, 0, 250_999, tzinfo=dt.timezone(dt.timedelta(hours=1))), given)
    assert e["uuid"] == given.lower()
    assert e["timestamp"] == "2026-01-31T12:00:00.250Z"
    e = wire("x", "u", None, "2026-01-31T12:00:00.007Z", uuid.UUID(given))
    assert e["timestamp"] == "2026-01-31T12:00:00.007Z"
    assert e["uuid"] == given.lower()


def test_numeric_distinct_id_is_sent_as_text() -> None:
    assert wire("x", 42)["distinct_id"] == "42"


def test_super_properties_are_merged_and_the_event_wins() -> None:
    e = wire("x", "u", {"plan": "pro", "$lib": "mine"}, super_properties={"plan": "free", "app": "web"})
    assert e["properties"] == {"plan": "pro", "app": "web", "$lib": "mine", "$lib_version": VERSION}


def test_the_api_key_properties_are_left_out() -> None:
    # capture reads properties.token as the request's key (and refuses a batch with two keys).
    e = wire("x", "u", {"token": "someone-elses", "api_key": "k", "keep": 1})
    assert "token" not in e["properties"] and "api_key" not in e["properties"]
    assert e["properties"]["keep"] == 1


def test_properties_are_copied_at_capture_time() -> None:
    props = {"items": [1]}
    q = build_event("x", "u", props)
    props["items"].append(2)
    props["later"] = True
    assert json.loads(q.body)["properties"]["items"] == [1]
    assert "later" not in json.loads(q.body)["properties"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("", "u"), "event must not be empty"),
        (("   ", "u"), "event must not be empty"),
        ((None, "u"), "event must be a str"),
        ((5, "u"), "event must be a str"),
        (("x" * 201, "u"), "at most 200"),
        (("x", ""), "distinct_id must not be empty"),
        (("x", "  "), "distinct_id must not be empty"),
        (("x", None), "distinct_id must be a str"),
        (("x", True), "distinct_id must be a str"),
        (("x", 1.5), "distinct_id must be a str"),
        (("x", "u" * 201), "at most 200"),
        (("x", "u", ["not", "a", "dict"]), "properties must be a dict"),
        (("x", "u", "text"), "properties must be a dict"),
        (("x", "u", {"f": float("nan")}), "properties['f']"),
        (("x", "u", {"o": object()}), "properties['o']"),
        (("x", "u", None, "not a time"), "timestamp"),
        (("x", "u", None, dt.datetime(1969, 12, 31, 23, 59)), "before 1970"),
        (("x", "u", None, 1700000000), "timestamp must be a datetime"),
        (("x", "u", None, None, "not-a-uuid"), "is not a UUID"),
        (("x", "u", None, None, "00000000-0000-0000-0000-000000000000"), "nil UUID"),
        (("x", "u", None, None, 12), "uuid must be a str"),
    ],
)
def test_refuses_what_capture_would_refuse(args: tuple, message: str) -> None:
    with pytest.raises(InvalidEventError) as e:
        build_event(*args)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)
