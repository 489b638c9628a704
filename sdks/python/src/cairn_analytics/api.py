"""Stored events through Cairn's query API, for scripts and back offices with a personal API key
(``phx_…``): read one event as it is now, update named fields, delete it, list a session's events.

    from cairn_analytics import EventsApi
    api = EventsApi("phx_...", project_id=1, host="https://cairn.example.com")
    api.update_event(uuid, properties={"plan": "pro", "coupon": None})   # None removes a property
    api.delete_event(uuid)
    api.get_event(uuid)                     # {"uuid", "event", "properties", "version", …}
    for e in api.session_events("sess-1"):  # oldest first, every page
        ...

Updates and deletions need the key's ``events:write`` scope (reading needs ``query:read``). They
are answered once Kafka holds them (202) and stored by the consumer shortly after, in the order
they were made; ``get_event`` shows the new version then. Every call is one request, not retried:
an error raises ``ApiError`` with the API's status, code, field and message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Mapping, Optional

from .errors import CairnError
from .events import Timestamp, UUIDLike, check_uuid
from .serialize import format_timestamp, to_json_value
from .version import LIB_NAME, VERSION

#: At most this much of an answer's body is read.
_MAX_RESPONSE_BYTES = 8 << 20


class ApiError(CairnError):
    """The query API refused a call (or could not be reached: ``status`` is then ``None``).

    Attributes:
        status: the HTTP status, e.g. 400, 403 (the key lacks the scope), 404 (no such event).
        code: the API's error code (``invalid_request``, ``forbidden``, ``not_found``, …).
        field: for a 400, the input at fault (``distinct_id``, ``timestamp``, ``properties``, …).
        message: what went wrong, for people.
    """

    def __init__(
        self, message: str, *, status: Optional[int] = None, code: Optional[str] = None, field: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field

    def __repr__(self) -> str:
        return f"ApiError(status={self.status!r}, code={self.code!r}, field={self.field!r}, message={self.message!r})"


class EventsApi:
    """The stored-event routes of one project (``/api/v1/projects/{project_id}/…``)."""

    def __init__(self, personal_api_key: str, project_id: int, host: str, *, timeout: float = 10.0) -> None:
        if not isinstance(personal_api_key, str) or not personal_api_key.strip():
            raise ValueError("personal_api_key must be a personal API key (phx_…)")
        if not isinstance(project_id, int) or isinstance(project_id, bool) or project_id <= 0:
            raise ValueError("project_id must be a positive integer")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if urllib.parse.urlsplit(host).scheme not in ("http", "https"):
            raise ValueError("host must be an http:// or https:// URL")
        self._key = personal_api_key.strip()
        self._base = f"{host.rstrip('/')}/api/v1/projects/{project_id}"
        self._timeout = timeout

    def get_event(self, uuid: UUIDLike) -> Dict[str, Any]:
        """The event as it is now: its latest version (``version`` 0 as captured)."""
        return self._call("GET", f"/events/{_event_id(uuid)}")

    def update_event(
        self,
        uuid: UUIDLike,
        *,
        event: Optional[str] = None,
        timestamp: Optional[Timestamp] = None,
        properties: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Sets the named fields: the event's name, its time, and properties (``None`` removes
        one; the others are kept). The distinct id never changes."""
        body: Dict[str, Any] = {}
        if event is not None:
            body["event"] = event
        if timestamp is not None:
            body["timestamp"] = timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)
        if properties is not None:
            if not isinstance(properties, Mapping):
                raise ValueError("properties must be a mapping")
            body["properties"] = {str(k): to_json_value(v, f"properties.{k}") for k, v in properties.items()}
        if not body:
            raise ValueError("name at least one of event, timestamp, properties")
        return self._call("PUT", f"/events/{_event_id(uuid)}", body)

    def delete_event(self, uuid: UUIDLike) -> Dict[str, Any]:
        """Deletes the event (final: later changes to it are dropped)."""
        return self._call("DELETE", f"/events/{_event_id(uuid)}")

    def session_events(
        self,
        session_id: str,
        *,
        date_from: Optional[str] = None,
        date_to: Optional[str] = None,
        page_size: int = 100,
    ) -> Iterator[Dict[str, Any]]:
        """The events of one session (``$session_id``), oldest first, every page (the range
        defaults to the last 30 days)."""
        cursor: Optional[str] = None
        while True:
            query = {"limit": str(page_size)}
            if date_from:
                query["date_from"] = date_from
            if date_to:
                query["date_to"] = date_to
            if cursor:
                query["cursor"] = cursor
            page = self._call("GET", f"/sessions/{urllib.parse.quote(session_id, safe='')}/events", query=query)
            yield from page.get("results", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _call(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None, query: Optional[Dict[str, str]] = None
    ) -> Dict[str, Any]:
        url = self._base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = json.dumps(body, separators=(",", ":")).encode("utf-8") if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._key}")
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"{LIB_NAME}/{VERSION}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 (http/https only)
                raw = response.read(_MAX_RESPONSE_BYTES + 1)
                if len(raw) > _MAX_RESPONSE_BYTES:
                    raise ApiError(f"the answer is larger than {_MAX_RESPONSE_BYTES} bytes", status=response.status)
                try:
                    answer = json.loads(raw.decode("utf-8"))
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise ApiError("the answer is not a JSON object", status=response.status)
                return answer
        except urllib.error.HTTPError as e:
            answer = _json(e.read(_MAX_RESPONSE_BYTES))
            raise ApiError(
                str(answer.get("message") or e.reason),
                status=e.code,
                code=answer.get("error"),
                field=answer.get("field"),
            ) from None
        except (urllib.error.URLError, OSError) as e:
            raise ApiError(f"the query API could not be reached: {e}") from e


def _event_id(uuid: UUIDLike) -> str:
    if uuid is None:
        raise ValueError("uuid is required: the stored event's id")
    return check_uuid(uuid)


def _json(raw: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8")) if raw else {}
    except ValueError:
        return {"message": raw[:200].decode("utf-8", errors="replace")}
    return value if isinstance(value, dict) else {"value": value}
