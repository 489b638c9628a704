"""The SDK (and PostHog's own Python SDK) against the real pipeline: capture → Kafka → consumer →
ClickHouse. Every check reads ClickHouse.

Needs CAIRN_CAPTURE_URL, CAIRN_API_KEY, CAIRN_PROJECT_ID, CAIRN_CLICKHOUSE_URL and
CAIRN_CLICKHOUSE_DATABASE; `cargo test -p cairn-e2e --test sdks python_sdk` starts the services and
sets them. Each test uses event names / distinct_ids of its own (with this run's id), so tests and
runs never see each other's rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from _support import Recorded, Reply, ScriptedServer

import cairn_analytics
from cairn_analytics import Client, VERSION
from cairn_analytics.serialize import to_json_value

CAPTURE = os.environ.get("CAIRN_CAPTURE_URL", "").rstrip("/")
pytestmark = pytest.mark.skipif(
    not CAPTURE,
    reason="CAIRN_CAPTURE_URL is not set: the integration tests need a running capture, consumer and "
    "ClickHouse (`cargo test -p cairn-e2e --test sdks python_sdk` starts them and runs these tests)",
)

KEY = os.environ.get("CAIRN_API_KEY", "")
PROJECT = int(os.environ.get("CAIRN_PROJECT_ID", "0") or 0)
CH_URL = os.environ.get("CAIRN_CLICKHOUSE_URL", "").rstrip("/")
CH_DB = os.environ.get("CAIRN_CLICKHOUSE_DATABASE", "")
RUN = uuid.uuid4().hex[:10]
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

MakeServer = Callable[..., ScriptedServer]


# -- ClickHouse ------------------------------------------------------------------------------------


def ch(sql: str) -> List[Dict[str, Any]]:
    url = f"{CH_URL}/?database={urllib.parse.quote(CH_DB)}"
    req = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        raise AssertionError(f"ClickHouse refused {sql!r}: {e.read().decode()[:500]}") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rows_where(where: str, expected: int, timeout: float = 60.0) -> List[Dict[str, Any]]:
    """The rows (deduplicated: FINAL) matching ``where``, once at least ``expected`` are there."""
    scope = f"FROM events FINAL WHERE project_id = {PROJECT} AND ({where})"
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n = int(ch(f"SELECT count() AS n {scope} FORMAT JSONEachRow")[0]["n"])
        if n >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    rows = ch(
        "SELECT toString(uuid) AS uuid, event, distinct_id, properties, "
        "toUnixTimestamp64Milli(timestamp) AS ts, toUnixTimestamp64Milli(received_at) AS recv "
        f"{scope} FORMAT JSONEachRow"
    )
    for r in rows:
        r["ts"], r["recv"] = int(r["ts"]), int(r["recv"])
        r["properties"] = json.loads(r["properties"])
    assert len(rows) >= expected, f"only {len(rows)} of {expected} rows arrived within {timeout} s ({where})"
    return rows


def by_uuid(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    out = {r["uuid"]: r for r in rows}
    assert len(out) == len(rows), "a uuid is stored twice"
    return out


# -- a proxy in front of capture --------------------------------------------------------------------


def forward(req: Recorded) -> Reply:
    """Sends a request on to the real capture, byte for byte, and returns capture's answer."""
    headers = {"Content-Type": req.headers.get("content-type", "application/json")}
    if "content-encoding" in req.headers:
        headers["Content-Encoding"] = req.headers["content-encoding"]
    upstream = urllib.request.Request(CAPTURE + req.path, data=req.raw, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(upstream, timeout=30) as r:
            raw, status, retry_after = r.read(), r.status, r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        raw, status, retry_after = e.read(), e.code, e.headers.get("Retry-After")
    req.upstream_status = status  # type: ignore[attr-defined]
    return Reply(status, json.loads(raw) if raw else None, {"Retry-After": retry_after} if retry_after else {})


def ms(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)


def sent_at_ms(req: Recorded) -> int:
    t = dt.datetime.strptime(req.body["sent_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return ms(t)


# -- 1. every field intact --------------------------------------------------------------------------


def props_for(i: int) -> Dict[str, Any]:
    return {
        "i": i,
        "text": "héllo wörld ✓ 日本語 🚀 \"quoted\" back\\slash\nnew line\ttab",
        "nested": {"list": [1, 2.5, None, True, "x", {"k": [i]}], "obj": {"deep": {"deeper": -i}}},
        "float": i / 7,
        "neg": -1234567,
        "big": 2**53,
        "zero": 0,
        "decimal": Decimal("19.99"),
        "when": dt.datetime(2026, 1, 31, 12, 0, 0, 123000, tzinfo=dt.timezone.utc),
        "tags": ("a", "b"),
        "empty_obj": {},
        "empty_list": [],
        "null": None,
        "flag": False,
    }


@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "plain"])
def test_every_event_arrives_once_with_every_field_intact(use_gzip: bool, make_server: MakeServer) -> None:
    n = 300
    name = f"sdk_py_fields_{RUN}_{'gzip' if use_gzip else 'plain'}"
    # A recording pass-through proxy: it tells which request (and so which sent_at) carried each
    # event, which capture's clock-skew correction needs to predict the stored timestamp exactly.
    proxy = make_server(default=forward)
    client = Client(KEY, proxy.url, gzip=use_gzip, flush_at=100, flush_interval=0.2)
    base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=3)
    expected: Dict[str, Tuple[str, Dict[str, Any], int]] = {}
    for i in range(n):
        ts = base + dt.timedelta(milliseconds=i * 1237 + i % 10)
        given_uuid = str(uuid.uuid4()) if i % 2 == 0 else None
        did = f"user-{RUN}-ü-{i % 17}"
        uid = client.capture(did, name, props_for(i), timestamp=ts, uuid=given_uuid)
        assert uid is not None
        if given_uuid:
            assert uid == given_uuid
        expected[uid] = (did, props_for(i), ms(ts))
    assert client.shutdown(timeout=60)
    s = client.stats()
    assert (s.sent, s.failed, s.dropped) == (n, 0, 0)
    assert all(getattr(r, "upstream_status", None) == 200 for r in proxy.requests)
    if use_gzip:
        assert all(r.headers.get("content-encoding") == "gzip" for r in proxy.requests)
    sent_at = {u: sent_at_ms(r) for r in proxy.requests for u in r.uuids}

    rows = by_uuid(rows_where(f"event = {lit(name)}", n))
    assert set(rows) == set(expected)
    for uid, (did, props, given_ms) in expected.items():
        row = rows[uid]
        assert row["event"] == name
        assert row["distinct_id"] == did
        want = to_json_value(props)
        assert isinstance(want, dict)
        want.update({"$lib": "cairn-python", "$lib_version": VERSION})
        assert row["properties"] == want, uid
        # Capture corrects for the client's clock: timestamp = received_at + (timestamp - sent_at),
        # to the millisecond.
        assert row["ts"] == row["recv"] + (given_ms - sent_at[uid]), uid
        assert abs(row["ts"] - given_ms) < 60_000


# -- 2. retries -------------------------------------------------------------------------------------


def test_503s_and_lost_answers_are_retried_and_stored_exactly_once(make_server: MakeServer) -> None:
    n = 250
    name = f"sdk_py_retry_{RUN}"

    def answered_503_after_forwarding(req: Recorded) -> Reply:
        # Capture stored the events, but the client never hears so: it must send them again.
        forward(req)
        return Reply(503, {"error": "unavailable", "message": "answer lost", "errors": []}, {"Retry-After": "0"})

    unavailable = {"error": "unavailable", "message": "Kafka is unavailable", "errors": []}
    proxy = make_server(
        Reply(503, unavailable, {"Retry-After": "0"}),
        Reply(503, unavailable, {"Retry-After": "1"}),
        Reply(503, unavailable, {"Retry-After": "0"}),
        answered_503_after_forwarding,
        answered_503_after_forwarding,
        default=forward,
    )
    client = Client(KEY, proxy.url, flush_at=100, flush_interval=0.2)
    # Noon yesterday: a resent event keeps its date (part of the table's deduplication key).
    base = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = [
        client.capture(f"retry-{RUN}-{i % 5}", name, {"i": i}, timestamp=base + dt.timedelta(milliseconds=i))
        for i in range(n)
    ]
    assert client.shutdown(timeout=60)
    s = client.stats()
    assert (s.sent, s.failed, s.retries) == (n, 0, 5)
    # Every request of a batch carried the same uuids; some reached capture twice.
    forwarded = [u for r in proxy.requests if getattr(r, "upstream_status", None) == 200 for u in r.uuids]
    assert set(forwarded) == set(ids) and len(forwarded) > n

    rows = by_uuid(rows_where(f"event = {lit(name)}", n))
    assert set(rows) == set(ids)
    assert sorted(r["properties"]["i"] for r in rows.values()) == list(range(n))


# -- 3. nothing lost at exit ------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import cairn_analytics

    host, key, name, mode = sys.argv[1:5]
    client = cairn_analytics.Client(key, host)
    for i in range(2000):
        client.capture("exit-" + name, name, {"i": i})
    if mode == "shutdown":
        client.shutdown()
    """
)


@pytest.mark.parametrize("mode", ["shutdown", "atexit"])
def test_a_process_that_exits_right_after_capture_loses_nothing(mode: str, tmp_path: pathlib.Path) -> None:
    name = f"sdk_py_exit_{mode}_{RUN}"
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), CAPTURE, KEY, name, mode],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    rows = rows_where(f"event = {lit(name)}", 2000)
    assert len(rows) == 2000
    assert sorted(r["properties"]["i"] for r in rows) == list(range(2000))


# -- 4. identify and alias --------------------------------------------------------------------------


def test_identify_set_and_alias_arrive_in_posthog_shape() -> None:
    user, anon = f"person-{RUN}", f"anon-{RUN}"
    client = Client(KEY, CAPTURE, flush_interval=0.2)
    ids = {
        "$identify": client.identify(user, {"email": "ada@example.com", "plan": "pro", "age": 36}),
        "$set": client.set(user, {"plan": "team"}),
        "$set_once": client.set_once(user, {"first_plan": "pro"}),
        "$create_alias": client.alias(anon, user),
    }
    assert client.shutdown(timeout=60)
    rows = rows_where(f"distinct_id IN ({lit(user)}, {lit(anon)})", 4)
    by_event = {r["event"]: r for r in rows}
    assert set(by_event) == set(ids) and len(rows) == 4
    assert {e: r["uuid"] for e, r in by_event.items()} == ids
    identify = by_event["$identify"]
    assert identify["distinct_id"] == user
    assert identify["properties"]["$set"] == {"email": "ada@example.com", "plan": "pro", "age": 36}
    assert by_event["$set"]["properties"]["$set"] == {"plan": "team"}
    assert by_event["$set_once"]["properties"]["$set_once"] == {"first_plan": "pro"}
    alias = by_event["$create_alias"]
    assert alias["distinct_id"] == anon
    assert alias["properties"]["alias"] == user
    assert alias["properties"]["distinct_id"] == anon


def test_module_level_api_sends_to_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sdk_py_module_{RUN}"
    monkeypatch.setattr(cairn_analytics, "api_key", KEY)
    monkeypatch.setattr(cairn_analytics, "host", CAPTURE)
    try:
        uid = cairn_analytics.capture(f"module-{RUN}", name, {"ok": True})
        assert cairn_analytics.flush(30)
    finally:
        cairn_analytics.shutdown()
    [row] = rows_where(f"event = {lit(name)}", 1)
    assert row["uuid"] == uid and row["properties"]["ok"] is True


def test_a_refused_event_is_dropped_and_the_rest_of_its_batch_stored(make_server: MakeServer) -> None:
    # A timestamp two days ahead passes the SDK (capture's future limit is its own setting) but
    # capture refuses it: its 400 names that event alone, and the SDK resends the others.
    name = f"sdk_py_partial_{RUN}"
    refused: List[Tuple[Any, List[Dict[str, Any]]]] = []
    proxy = make_server(default=forward)
    client = Client(KEY, proxy.url, flush_interval=30, on_error=lambda e, evs: refused.append((e, evs)))
    good = [client.capture(f"partial-{RUN}", name, {"i": i}) for i in range(3)]
    bad = client.capture(
        f"partial-{RUN}", name, {"i": 99}, timestamp=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    )
    good.append(client.capture(f"partial-{RUN}", name, {"i": 3}))
    assert client.shutdown(timeout=60)
    assert [getattr(r, "upstream_status", None) for r in proxy.requests] == [400, 200]
    assert proxy.requests[1].uuids == good
    [(error, events)] = refused
    assert error.status == 400 and [e["uuid"] for e in events] == [bad]
    assert error.errors[0].field == "timestamp"
    rows = by_uuid(rows_where(f"event = {lit(name)}", 4))
    assert set(rows) == set(good)


def test_unknown_api_key_is_refused_without_retry() -> None:
    refused: List[Any] = []
    client = Client(f"phc_unknown_{RUN}", CAPTURE, on_error=lambda e, evs: refused.append(e))
    client.capture("u", f"sdk_py_unauthorized_{RUN}")
    assert client.shutdown(timeout=30)
    [error] = refused
    assert error.status == 401 and error.attempts == 1 and error.code == "unauthorized"
    assert client.stats().requests == 1


# -- 5. PostHog's own SDK ---------------------------------------------------------------------------


def test_posthog_python_sends_to_cairn_unchanged() -> None:
    import posthog

    errors: List[Any] = []
    ph = posthog.Posthog(KEY, host=CAPTURE, gzip=True, flush_at=10, on_error=lambda e, batch: errors.append(e))
    user, anon = f"ph-user-{RUN}", f"ph-anon-{RUN}"
    name = f"ph_py_event_{RUN}"
    given = str(uuid.uuid4())
    when = dt.datetime(2026, 1, 31, 12, 0, 0, 456000, tzinfo=dt.timezone.utc)
    # posthog 6+/7.x: capture(event, distinct_id=..., properties=..., timestamp=..., uuid=...).
    ph_uuids = [
        ph.capture(name, distinct_id=user, properties={"plan": "pro", "n": 1, "nested": {"a": [1, "b"]}}, uuid=given),
        ph.capture(name, distinct_id=user, properties={"n": 2}, timestamp=when),
    ]
    ph_uuids += [ph.capture(name, distinct_id=user, properties={"n": n}) for n in range(3, 26)]
    # 7.x has no identify(): set() is what identify became (a $set event with the person properties).
    set_uuid = ph.set(distinct_id=user, properties={"email": "ph@example.com"})
    alias_uuid = ph.alias(previous_id=anon, distinct_id=user)
    ph.flush()
    ph.shutdown()
    assert errors == []
    assert ph_uuids[0] == given

    rows = by_uuid(rows_where(f"event = {lit(name)}", 25))
    assert set(rows) == set(ph_uuids) and len(rows) == 25
    first = rows[given]
    assert first["distinct_id"] == user
    assert first["properties"]["plan"] == "pro" and first["properties"]["nested"] == {"a": [1, "b"]}
    assert first["properties"]["$lib"] == "posthog-python"
    assert "token" not in first["properties"] and "api_key" not in first["properties"]
    # Its timestamp (corrected by capture for clock skew with PostHog's sent_at) stays put.
    assert abs(rows[ph_uuids[1]]["ts"] - ms(when)) < 5_000
    assert sorted(r["properties"]["n"] for r in rows.values()) == list(range(1, 26))

    people = by_uuid(rows_where(f"distinct_id IN ({lit(user)}, {lit(anon)}) AND event IN ('$set', '$create_alias')", 2))
    assert people[set_uuid]["event"] == "$set"
    assert people[set_uuid]["properties"]["$set"] == {"email": "ph@example.com"}
    alias: Optional[Dict[str, Any]] = people.get(alias_uuid)
    assert alias is not None and alias["event"] == "$create_alias"
    assert alias["distinct_id"] == anon and alias["properties"]["alias"] == user
