"""The client's behaviour: batching, the bounded queue, flush/shutdown, the API's event shapes."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable

import pytest
from _support import Recorded, Reply, ScriptedServer, accepted
from conftest import API_KEY

import cairn_analytics
from cairn_analytics import Client, InvalidEventError, VERSION

MakeServer = Callable[..., ScriptedServer]
MakeClient = Callable[..., Client]

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def test_capture_returns_the_uuid_that_is_sent(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url)
    uid = client.capture("user-1", "signed_up", {"plan": "pro", "seats": 3})
    assert client.flush(10)
    [event] = server.events()
    assert event["uuid"] == uid
    assert event["event"] == "signed_up" and event["distinct_id"] == "user-1"
    assert event["properties"] == {"plan": "pro", "seats": 3, "$lib": "cairn-python", "$lib_version": VERSION}


def test_invalid_events_raise_and_nothing_is_queued(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url)
    with pytest.raises(InvalidEventError):
        client.capture("", "e")
    with pytest.raises(InvalidEventError):
        client.capture("u", "e", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        client.capture("u", "e", {"when": object()})
    assert client.stats().queued == 0
    assert client.flush(10)
    assert server.requests == []


def test_batches_by_size(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, flush_at=10, flush_interval=30)
    ids = [client.capture("u", "e", {"i": i}) for i in range(25)]
    assert server.wait_for(2)
    assert server.batch_sizes() == [10, 10]  # the last 5 wait for the interval or a flush
    assert client.stats().queued == 5
    assert client.flush(10)
    assert server.batch_sizes() == [10, 10, 5]
    assert [e["uuid"] for e in server.events()] == ids  # in order, each once


def test_batches_by_interval(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, flush_at=100, flush_interval=0.2)
    started = time.monotonic()
    ids = [client.capture("u", "e") for _ in range(3)]
    assert server.wait_for(1, timeout=5)
    assert time.monotonic() - started >= 0.15  # it did wait for the interval
    assert server.batch_sizes() == [3]
    assert server.requests[0].uuids == ids


def test_batches_stay_under_max_batch_bytes(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, flush_at=100, flush_interval=30, max_batch_bytes=2_000)
    ids = [client.capture("u", "e", {"pad": "x" * 400}) for _ in range(7)]
    assert client.flush(10)
    assert all(len(r.text) < 2_000 + 200 for r in server.requests)
    assert server.batch_sizes() == [3, 3, 1]
    assert [e["uuid"] for e in server.events()] == ids
    # One event larger than the limit still goes, alone.
    big = client.capture("u", "e", {"pad": "y" * 5_000})
    assert client.flush(10)
    assert server.requests[-1].uuids == [big]


def test_a_full_queue_drops_the_newest_events(make_server: MakeServer, make_client: MakeClient) -> None:
    gate = threading.Event()
    server = make_server(lambda req: Reply(200, {"status": 1, "accepted": 1}, gate=gate))
    client = make_client(server.url, flush_at=1, max_queue_size=5)
    first = client.capture("u", "e", {"n": 0})
    assert server.wait_for(1)  # the first event is in flight, the queue is empty
    queued = [client.capture("u", "e", {"n": n}) for n in range(1, 6)]
    dropped = [client.capture("u", "e", {"n": n}) for n in range(6, 9)]
    assert all(queued) and dropped == [None, None, None]
    s = client.stats()
    assert (s.queued, s.dropped) == (5, 3)
    gate.set()
    assert client.flush(10)
    assert [e["uuid"] for e in server.events()] == [first, *queued]
    assert [e["properties"]["n"] for e in server.events()] == [0, 1, 2, 3, 4, 5]
    assert client.stats().sent == 6


def test_flush_blocks_until_the_answer(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server(default=lambda req: Reply(200, {"status": 1, "accepted": len(req.events)}, delay=0.3))
    client = make_client(server.url, flush_interval=30)
    for i in range(3):
        client.capture("u", "e", {"i": i})
    assert client.flush(10) is True
    # Everything is answered by the time flush() returns: no waiting here.
    s = client.stats()
    assert (s.sent, s.queued) == (3, 0)


def test_flush_returns_false_on_timeout(make_server: MakeServer, make_client: MakeClient) -> None:
    gate = threading.Event()
    server = make_server(lambda req: Reply(200, {"status": 1, "accepted": 1}, gate=gate))
    client = make_client(server.url)
    client.capture("u", "e")
    started = time.monotonic()
    assert client.flush(0.2) is False
    assert time.monotonic() - started < 2
    gate.set()
    assert client.flush(10) is True
    assert client.stats().sent == 1
    assert len(server.requests) == 1


def test_shutdown_sends_everything_and_stops(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, flush_at=50, flush_interval=30)
    ids = [client.capture("u", "e", {"i": i}) for i in range(120)]
    assert client.shutdown() is True
    assert [e["uuid"] for e in server.events()] == ids
    worker_threads = [t for t in threading.enumerate() if t is client._worker._thread]
    assert worker_threads == []
    assert client.capture("u", "late") is None
    assert client.stats().dropped == 1
    assert client.shutdown() is True  # twice is fine
    assert len(server.events()) == 120


def test_context_manager_shuts_down(make_server: MakeServer) -> None:
    server = make_server()
    with Client(API_KEY, server.url, flush_interval=30) as client:
        uid = client.capture("u", "e")
    assert server.requests[0].uuids == [uid]


def test_sync_mode_sends_before_capture_returns(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server(Reply(503))
    client = make_client(server.url, sync_mode=True)
    uid = client.capture("u", "e")
    assert [r.uuids for r in server.requests] == [[uid], [uid]]
    assert client.stats().sent == 1
    assert client._worker._thread is None


def test_disabled_client_sends_nothing(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, disabled=True)
    assert client.capture("u", "e") is None
    assert client.identify("u", {"a": 1}) is None
    assert client.alias("a", "b") is None
    assert client.flush(1) is True
    assert server.requests == [] and client._worker._thread is None
    assert Client("", disabled=True).capture("u", "e") is None


def test_identify_set_set_once_and_alias_shapes(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, super_properties={"app": "api"})
    client.identify("user-1", {"email": "a@example.com", "plan": "pro"})
    client.set("user-1", {"plan": "team"})
    client.set_once("user-1", {"first_seen": "2026-01-31"})
    client.alias("anon-7", "user-1")
    assert client.flush(10)
    identify, set_, set_once, alias = server.events()
    assert (identify["event"], identify["distinct_id"]) == ("$identify", "user-1")
    assert identify["properties"]["$set"] == {"email": "a@example.com", "plan": "pro"}
    assert identify["properties"]["app"] == "api"
    assert (set_["event"], set_["properties"]["$set"]) == ("$set", {"plan": "team"})
    assert (set_once["event"], set_once["properties"]["$set_once"]) == ("$set_once", {"first_seen": "2026-01-31"})
    # PostHog's shape: sent as the previous id, naming the new one as `alias`.
    assert alias["event"] == "$create_alias"
    assert alias["distinct_id"] == "anon-7"
    assert alias["properties"]["distinct_id"] == "anon-7"
    assert alias["properties"]["alias"] == "user-1"
    with pytest.raises(InvalidEventError):
        client.identify("user-1", ["not a dict"])  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        client.alias("", "user-1")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": ""},
        {"api_key": "   "},
        {"host": "127.0.0.1:18000"},
        {"host": "ftp://example.com"},
        {"flush_at": 0},
        {"max_queue_size": 0},
        {"max_retries": -1},
        {"flush_interval": 0},
        {"timeout": -1},
        {"on_error": "not callable"},
        {"super_properties": {"bad": object()}},
    ],
)
def test_bad_settings_are_refused(kwargs: dict) -> None:
    args = {"api_key": API_KEY, "host": "http://127.0.0.1:1", **kwargs}
    with pytest.raises(ValueError):
        Client(args.pop("api_key"), args.pop("host"), **args)


def test_module_level_api(make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server = make_server()
    monkeypatch.setattr(cairn_analytics, "api_key", API_KEY)
    monkeypatch.setattr(cairn_analytics, "host", server.url)
    monkeypatch.setattr(cairn_analytics, "flush_interval", 30.0)
    try:
        uid = cairn_analytics.capture("user-1", "signed_up", {"plan": "pro"})
        cairn_analytics.identify("user-1", {"email": "a@example.com"})
        cairn_analytics.set("user-1", {"x": 1})
        cairn_analytics.set_once("user-1", {"y": 2})
        cairn_analytics.alias("anon", "user-1")
        assert cairn_analytics.flush(10)
        assert cairn_analytics.stats().sent == 5
        assert [e["event"] for e in server.events()] == ["signed_up", "$identify", "$set", "$set_once", "$create_alias"]
        assert server.events()[0]["uuid"] == uid
        client = cairn_analytics.default_client
        assert cairn_analytics.shutdown()
        assert cairn_analytics.default_client is None and client is not None
    finally:
        cairn_analytics.shutdown()
    monkeypatch.setattr(cairn_analytics, "api_key", None)
    with pytest.raises(cairn_analytics.CairnError, match="api_key"):
        cairn_analytics.capture("u", "e")


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import cairn_analytics

    host, key, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "module-atexit":
        cairn_analytics.api_key = key
        cairn_analytics.host = host
        capture = cairn_analytics.capture
    else:
        client = cairn_analytics.Client(key, host)
        capture = client.capture
    for i in range(n):
        capture("exit-user", "exit_test", {"i": i, "mode": mode})
    if mode == "shutdown":
        client.shutdown()
    # Otherwise the interpreter exits right away: atexit must send the queue.
    """
)


@pytest.mark.parametrize("mode", ["shutdown", "atexit", "module-atexit"])
def test_nothing_is_lost_when_the_process_exits_right_after_capture(
    mode: str, make_server: MakeServer, tmp_path: pathlib.Path
) -> None:
    server = make_server(default=lambda req: Reply(200, {"status": 1, "accepted": len(req.events)}, delay=0.01))
    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run(
        [sys.executable, str(script), server.url, API_KEY, mode, "2000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    received = sorted(e["properties"]["i"] for e in server.events())
    assert received == list(range(2000))
    assert all(e["properties"]["mode"] == mode for e in server.events())


def test_sources_parse_as_python_3_9() -> None:
    for path in SRC.rglob("*.py"):
        source = path.read_text()
        ast.parse(source, filename=str(path), feature_version=(3, 9))


def test_package_is_typed() -> None:
    assert (SRC / "cairn_analytics" / "py.typed").exists()


def test_wire_recorded_helper_sanity(make_server: MakeServer) -> None:
    # The helper server itself decodes what it got (guards the other tests against a broken helper).
    server = make_server()
    import urllib.request

    body = json.dumps({"api_key": "k", "batch": [{"event": "e", "uuid": "1"}]}).encode()
    with urllib.request.urlopen(urllib.request.Request(server.url + "/batch", data=body, method="POST")) as r:
        assert json.loads(r.read()) == {"status": 1, "accepted": 1}
    assert isinstance(server.requests[0], Recorded) and server.requests[0].uuids == ["1"]
    assert accepted(server.requests[0]).status == 200


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_sends_its_own_events_and_not_the_parents(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, flush_interval=30)
    parent_event = client.capture("u", "before_fork")  # queued, not sent yet
    pid = os.fork()
    if pid == 0:  # the child: a fresh queue and a sending thread of its own
        ok = False
        try:
            ok = client.stats().queued == 0 and client.capture("u", "in_child") is not None and client.flush(10)
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert [e["event"] for e in server.events()] == ["in_child"]
    assert client.flush(10)
    events = server.events()
    assert [e["event"] for e in events] == ["in_child", "before_fork"]
    assert events[1]["uuid"] == parent_event
