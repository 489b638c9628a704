"""EventsApi against a local HTTP server that records each request and answers from a script:
the method, path, query string, headers and body of every call, and errors raised with the
API's status, code and field."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from cairn_analytics import ApiError, EventsApi

Answer = Tuple[int, Dict[str, Any]]


@pytest.fixture()
def server() -> Iterator[Tuple[str, List[Dict[str, Any]], List[Answer]]]:
    seen: List[Dict[str, Any]] = []
    script: List[Answer] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            pass

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(raw) if raw else None,
                }
            )
            status, body = script.pop(0) if script else (200, {})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = handle_any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", seen, script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_calls_name_the_project_event_and_key(server: Tuple[str, List[Dict[str, Any]], List[Answer]]) -> None:
    host, seen, script = server
    api = EventsApi(" phx_secret ", project_id=7, host=host)
    event_id = uuid.UUID("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")
    script.append((200, {"uuid": str(event_id), "version": 0}))
    assert api.get_event(event_id)["version"] == 0
    script.append((202, {"uuid": str(event_id), "op": "update", "status": "accepted"}))
    answer = api.update_event(
        str(event_id),
        event="purchase_refunded",
        timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
        properties={"amount": 0, "coupon": None},
    )
    assert answer["status"] == "accepted"
    script.append((202, {"uuid": str(event_id), "op": "delete", "status": "accepted"}))
    api.delete_event(event_id)
    assert [(r["method"], r["path"]) for r in seen] == [
        ("GET", f"/api/v1/projects/7/events/{event_id}"),
        ("PUT", f"/api/v1/projects/7/events/{event_id}"),
        ("DELETE", f"/api/v1/projects/7/events/{event_id}"),
    ]
    assert all(r["headers"]["authorization"] == "Bearer phx_secret" for r in seen)
    assert seen[1]["body"] == {
        "event": "purchase_refunded",
        "timestamp": "2026-01-02T03:04:05.678Z",
        "properties": {"amount": 0, "coupon": None},
    }
    assert seen[1]["headers"]["content-type"] == "application/json"
    assert seen[2]["body"] is None


def test_session_events_follow_every_page(server: Tuple[str, List[Dict[str, Any]], List[Answer]]) -> None:
    host, seen, script = server
    api = EventsApi("phx_k", project_id=3, host=host)
    script.append((200, {"results": [{"uuid": "a"}, {"uuid": "b"}], "next_cursor": "c1"}))
    script.append((200, {"results": [{"uuid": "c"}], "next_cursor": None}))
    got = [e["uuid"] for e in api.session_events("s/1 x", date_from="-7d", page_size=2)]
    assert got == ["a", "b", "c"]
    assert seen[0]["path"] == "/api/v1/projects/3/sessions/s%2F1%20x/events?limit=2&date_from=-7d"
    assert seen[1]["path"] == "/api/v1/projects/3/sessions/s%2F1%20x/events?limit=2&date_from=-7d&cursor=c1"


def test_refusals_raise_with_status_code_and_field(server: Tuple[str, List[Dict[str, Any]], List[Answer]]) -> None:
    host, _, script = server
    api = EventsApi("phx_k", project_id=3, host=host)
    event_id = "0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b"
    script.append((400, {"error": "invalid_request", "message": "cannot be changed", "field": "distinct_id"}))
    with pytest.raises(ApiError) as e:
        api.update_event(event_id, properties={"x": 1})
    assert (e.value.status, e.value.code, e.value.field) == (400, "invalid_request", "distinct_id")
    script.append((404, {"error": "not_found", "message": "event not found"}))
    with pytest.raises(ApiError) as e:
        api.get_event(event_id)
    assert (e.value.status, e.value.message) == (404, "event not found")
    script.append((403, {"error": "forbidden", "message": "this credential lacks the events:write permission"}))
    with pytest.raises(ApiError) as e:
        api.delete_event(event_id)
    assert e.value.code == "forbidden"


def test_bad_arguments_are_refused_before_any_request() -> None:
    api = EventsApi("phx_k", project_id=1, host="http://127.0.0.1:9")
    with pytest.raises(ValueError):
        api.update_event("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")
    with pytest.raises(ValueError):
        api.get_event(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        api.get_event("not-a-uuid")
    with pytest.raises(ValueError):
        EventsApi("", project_id=1, host="http://x")
    with pytest.raises(ValueError):
        EventsApi("phx_k", project_id=0, host="http://x")
    with pytest.raises(ApiError) as e:
        api.get_event("0192f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b")
    assert e.value.status is None, "nothing listens on port 9"
