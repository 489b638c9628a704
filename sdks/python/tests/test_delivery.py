"""What the client does with each of capture's answers, against a real local HTTP server."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import time
from typing import Callable, List

import pytest
from _support import Recorded, Reply, ScriptedServer, accepted, error_body
from conftest import API_KEY, ErrorLog

from cairn_analytics import Client

MakeServer = Callable[..., ScriptedServer]
MakeClient = Callable[..., Client]


def capture_n(client: Client, n: int, event: str = "e") -> List[str]:
    ids = [client.capture(f"user-{i}", event, {"i": i}) for i in range(n)]
    assert all(ids)
    return ids  # type: ignore[return-value]


def sent_at(req: Recorded) -> dt.datetime:
    return dt.datetime.strptime(req.body["sent_at"], "%Y-%m-%dT%H:%M:%S.%fZ")


def test_envelope_gzip_and_headers(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, gzip=True)
    ids = capture_n(client, 3)
    assert client.flush(10)
    [req] = server.requests
    assert req.path == "/batch"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("cairn-python/")
    assert gzip.decompress(req.raw)  # really gzip
    assert set(req.body) == {"api_key", "sent_at", "batch"}
    assert req.body["api_key"] == API_KEY
    assert abs((sent_at(req) - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()) < 5
    assert req.uuids == ids
    assert client.stats().sent == 3


def test_plain_json_without_gzip(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server()
    client = make_client(server.url, gzip=False)
    ids = capture_n(client, 2)
    assert client.flush(10)
    [req] = server.requests
    assert "content-encoding" not in req.headers
    assert req.raw.startswith(b'{"api_key":')
    assert req.uuids == ids


def test_503_503_200_resends_the_same_events(make_server: MakeServer, make_client: MakeClient, errors: ErrorLog) -> None:
    unavailable = Reply(503, error_body("unavailable", "Kafka is unavailable", []), {"Retry-After": "0"})
    server = make_server(unavailable, unavailable)
    client = make_client(server.url, on_error=errors)
    ids = capture_n(client, 5)
    assert client.flush(10)
    assert len(server.requests) == 3
    # Byte for byte the same events each time: same uuids, same timestamps, same properties.
    assert [r.uuids for r in server.requests] == [ids, ids, ids]
    assert server.requests[0].events == server.requests[2].events
    assert errors.calls == []
    s = client.stats()
    assert (s.sent, s.failed, s.requests, s.retries) == (5, 0, 3, 2)


def test_500_and_network_errors_are_retried(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server(Reply(500), Reply(drop=True), Reply(502))
    client = make_client(server.url)
    ids = capture_n(client, 2)
    assert client.flush(10)
    assert [r.uuids for r in server.requests] == [ids] * 4
    assert client.stats().sent == 2


def test_a_slow_answer_times_out_and_is_retried(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server(Reply(200, {"status": 1, "accepted": 1}, delay=1.5))
    client = make_client(server.url, timeout=0.3)
    ids = capture_n(client, 1)
    assert client.flush(10)
    assert [r.uuids for r in server.requests] == [ids, ids]
    assert client.stats().retries == 1


def test_429_honours_retry_after(make_server: MakeServer, make_client: MakeClient) -> None:
    server = make_server(Reply(429, error_body("rate_limited", "slow down", []), {"Retry-After": "1"}))
    # Without Retry-After the backoff would wait at most 10 ms.
    client = make_client(server.url, backoff_base=0.01, backoff_max=0.01)
    ids = capture_n(client, 4)
    assert client.flush(10)
    first, second = server.requests
    assert first.uuids == second.uuids == ids
    assert second.at - first.at >= 0.95
    # Each request says when it was sent: capture corrects timestamps for clock skew with it.
    assert (sent_at(second) - sent_at(first)).total_seconds() >= 0.95
    assert first.events == second.events


def test_gives_up_after_max_retries(make_server: MakeServer, make_client: MakeClient, errors: ErrorLog) -> None:
    server = make_server(default=Reply(503, error_body("unavailable", "no Kafka", []), {"Retry-After": "0"}))
    client = make_client(server.url, max_retries=2, on_error=errors)
    ids = capture_n(client, 3)
    assert client.flush(10)
    assert len(server.requests) == 3
    [(error, events)] = errors.calls
    assert error.status == 503 and error.code == "unavailable" and error.attempts == 3
    assert [e["uuid"] for e in events] == ids
    s = client.stats()
    assert (s.sent, s.failed, s.retries) == (0, 3, 2)


def test_400_drops_only_the_named_events_and_resends_the_rest(
    make_server: MakeServer, make_client: MakeClient, errors: ErrorLog
) -> None:
    refused = Reply(
        400,
        error_body(
            "invalid_events",
            "1 of 4 events are invalid; none were accepted",
            [{"index": 1, "field": "timestamp", "reason": "is more than 82800 seconds in the future"}],
        ),
    )
    server = make_server(refused)
    client = make_client(server.url, on_error=errors)
    ids = capture_n(client, 4)
    assert client.flush(10)
    assert [r.uuids for r in server.requests] == [ids, [ids[0], ids[2], ids[3]]]
    [(error, events)] = errors.calls
    assert error.status == 400 and error.code == "invalid_events"
    assert [e["uuid"] for e in events] == [ids[1]]
    assert events[0]["properties"]["i"] == 1
    assert [(f.index, f.field, f.reason) for f in error.errors] == [
        (0, "timestamp", "is more than 82800 seconds in the future")
    ]
    assert "timestamp" in error.message
    s = client.stats()
    assert (s.sent, s.failed) == (3, 1)


def test_400_naming_several_events_with_several_errors(
    make_server: MakeServer, make_client: MakeClient, errors: ErrorLog
) -> None:
    refused = Reply(
        400,
        error_body(
            "invalid_events",
            "2 of 5 events are invalid",
            [
                {"index": 4, "field": "uuid", "reason": "must be a UUID"},
                {"index": 0, "field": "event", "reason": "must not be empty"},
                {"index": 0, "field": "distinct_id", "reason": "is required"},
                {"index": 99, "field": "event", "reason": "out of range: ignored"},
            ],
        ),
    )
    server = make_server(refused)
    client = make_client(server.url, on_error=errors)
    ids = capture_n(client, 5)
    assert client.flush(10)
    assert server.requests[1].uuids == ids[1:4]
    [(error, events)] = errors.calls
    assert [e["uuid"] for e in events] == [ids[0], ids[4]]
    assert [(f.index, f.field) for f in error.errors] == [(0, "event"), (0, "distinct_id"), (1, "uuid")]


def test_400_without_event_indexes_drops_the_batch(
    make_server: MakeServer, make_client: MakeClient, errors: ErrorLog
) -> None:
    server = make_server(Reply(400, error_body("invalid_payload", "sent_at must be an RFC 3339 date-time", [{"field": "sent_at", "reason": "bad"}])))
    client = make_client(server.url, on_error=errors)
    ids = capture_n(client, 3)
    assert client.flush(10)
    assert len(server.requests) == 1
    [(error, events)] = errors.calls
    assert error.status == 400 and [e["uuid"] for e in events] == ids
    assert error.errors[0].field == "sent_at" and error.errors[0].index is None


def too_large_if_big(req: Recorded) -> Reply:
    if any("big" in e["properties"] for e in req.events):
        return Reply(413, error_body("payload_too_large", "event exceeds 1048576 bytes", [{"index": 0, "field": "", "reason": "exceeds"}]))
    return accepted(req)


def test_413_splits_the_batch_in_halves_and_drops_a_single_event_too_large(
    make_server: MakeServer, make_client: MakeClient, errors: ErrorLog
) -> None:
    server = make_server(default=too_large_if_big)
    client = make_client(server.url, on_error=errors, flush_interval=10)
    a = client.capture("u", "a")
    big = client.capture("u", "big", {"big": "single-too-large"})
    c = client.capture("u", "c")
    d = client.capture("u", "d")
    assert client.flush(10)
    assert [r.uuids for r in server.requests] == [[a, big, c, d], [a, big], [a], [big], [c, d]]
    assert [r.path for r in server.requests] == ["/batch"] * 5
    [(error, events)] = errors.calls
    assert error.status == 413 and error.code == "payload_too_large"
    assert [e["uuid"] for e in events] == [big]
    s = client.stats()
    assert (s.sent, s.failed, s.requests) == (3, 1, 5)


@pytest.mark.parametrize("status", [401, 403, 404, 422])
def test_other_4xx_are_not_retried(status: int, make_server: MakeServer, make_client: MakeClient, errors: ErrorLog) -> None:
    server = make_server(default=Reply(status, error_body("unauthorized", "the API key is not valid", [{"field": "api_key", "reason": "the API key is not valid"}])))
    client = make_client(server.url, on_error=errors)
    ids = capture_n(client, 3)
    assert client.flush(10)
    assert len(server.requests) == 1
    [(error, events)] = errors.calls
    assert error.status == status and error.attempts == 1
    assert [e["uuid"] for e in events] == ids
    # The next batch is tried anew (a key may be created meanwhile).
    more = capture_n(client, 1)
    assert client.flush(10)
    assert server.requests[1].uuids == more


def test_a_redirect_is_not_followed(make_server: MakeServer, make_client: MakeClient, errors: ErrorLog) -> None:
    target = make_server()
    server = make_server(default=Reply(307, None, {"Location": target.url + "/batch"}))
    client = make_client(server.url, on_error=errors)
    capture_n(client, 1)
    assert client.flush(10)
    assert len(server.requests) == 1 and target.requests == []
    assert errors.calls[0][0].status == 307 and "redirect" in errors.calls[0][0].message


def test_the_api_key_is_never_logged(
    make_server: MakeServer, make_client: MakeClient, errors: ErrorLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cairn_analytics")
    server = make_server(
        Reply(503, {"error": "unavailable", "message": "x", "errors": []}),
        Reply(400, error_body("invalid_events", "bad", [{"index": 0, "field": "event", "reason": "bad"}])),
        Reply(401, error_body("unauthorized", "the API key is not valid", [])),
    )
    client = make_client(server.url, on_error=errors, debug=True)
    capture_n(client, 2)
    assert client.flush(10)
    capture_n(client, 1)
    assert client.flush(10)
    assert len(server.requests) == 4
    assert caplog.records, "expected log records"
    assert API_KEY not in caplog.text
    assert all(API_KEY not in str(e) and API_KEY not in repr(e) for e, _ in errors.calls)
    assert API_KEY not in repr(client)


def test_on_error_raising_does_not_stop_the_client(make_server: MakeServer, make_client: MakeClient) -> None:
    def boom(error: object, events: object) -> None:
        raise RuntimeError("callback bug")

    server = make_server(Reply(401))
    client = make_client(server.url, on_error=boom)
    capture_n(client, 1)
    assert client.flush(10)
    ids = capture_n(client, 2)
    assert client.flush(10)
    assert server.requests[-1].uuids == ids
    assert client.stats().sent == 2


def test_shutdown_gives_up_after_its_timeout(make_server: MakeServer, make_client: MakeClient, errors: ErrorLog) -> None:
    server = make_server(default=Reply(503, None, {"Retry-After": "30"}))
    client = make_client(server.url, on_error=errors, max_retries=10)
    ids = capture_n(client, 3)
    assert server.wait_for(1)
    started = time.monotonic()
    assert client.shutdown(timeout=0.5) is False
    assert time.monotonic() - started < 5
    assert server.wait_for(1) and len(server.requests) == 1  # no retry after the abort
    deadline = time.monotonic() + 5
    while not errors.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    [(error, events)] = errors.calls
    assert "shut down" in error.message and error.status == 503
    assert [e["uuid"] for e in events] == ids
