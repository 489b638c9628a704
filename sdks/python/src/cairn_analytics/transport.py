"""One HTTP request to capture: ``POST {host}/batch`` with the batch envelope, over urllib.

The envelope is ``{"api_key": KEY, "sent_at": NOW, "batch": [events]}``; ``sent_at`` is the time
of this very request (capture corrects each event's timestamp for the client's clock skew with
it), so a retry gets a new one while the events themselves stay byte for byte the same. The body
is gzipped (``Content-Encoding: gzip``) unless the client was made with ``gzip=False``.

Redirects are not followed: a POST that is redirected loses its body, so a 3xx is reported as it
is (point ``host`` at the final address instead).
"""

from __future__ import annotations

import gzip as gzip_mod
import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

from .retry import parse_retry_after
from .serialize import format_timestamp, utc_now
from .version import LIB_NAME, VERSION

log = logging.getLogger("cairn_analytics")

#: At most this much of an answer's body is read.
_MAX_RESPONSE_BYTES = 1 << 20


class Response:
    """What became of one request: an HTTP answer (``status``), or a network error (``error``)."""

    __slots__ = ("status", "body", "retry_after", "error")

    def __init__(
        self,
        status: Optional[int],
        body: Any = None,
        retry_after: Optional[float] = None,
        error: Optional[BaseException] = None,
    ) -> None:
        self.status = status
        #: The answer's JSON (a dict for capture's answers), or its text when it was not JSON.
        self.body = body
        self.retry_after = retry_after
        self.error = error

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status <= 299

    def error_code(self) -> Optional[str]:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), str):
            return str(self.body["error"])
        return None

    def message(self) -> str:
        if self.status is None:
            return f"network error: {self.error!r}"
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return f"HTTP {self.status}: {self.body['message']}"
        text = self.body if isinstance(self.body, str) else ""
        return f"HTTP {self.status}" + (f": {text[:200]}" if text else "")

    def field_errors(self) -> List[Dict[str, Any]]:
        """Capture's ``errors`` list (dicts with ``index``, ``field``, ``reason``), if any."""
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return [e for e in self.body["errors"] if isinstance(e, dict)]
        return []

    def __repr__(self) -> str:
        return f"Response(status={self.status!r}, retry_after={self.retry_after!r}, error={self.error!r})"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class Transport:
    """Sends batches of encoded events to one capture endpoint with one API key."""

    def __init__(self, host: str, api_key: str, *, gzip: bool = True, timeout: float = 10.0) -> None:
        self.url = host.rstrip("/") + "/batch"
        self._key_json = json.dumps(api_key).encode("utf-8")
        self.gzip = gzip
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.user_agent = f"{LIB_NAME}/{VERSION}"

    def body(self, events: Sequence[bytes]) -> bytes:
        """The envelope around already-encoded events, stamped with the current time."""
        sent_at = format_timestamp(utc_now()).encode("ascii")
        return b"".join(
            (b'{"api_key":', self._key_json, b',"sent_at":"', sent_at, b'","batch":[', b",".join(events), b"]}")
        )

    def post(self, events: Sequence[bytes]) -> Response:
        """One request with these events; never raises for network or HTTP errors."""
        data = self.body(events)
        headers: Dict[str, str] = {"Content-Type": "application/json", "User-Agent": self.user_agent}
        if self.gzip:
            data = gzip_mod.compress(data, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        log.debug("POST %s: %d events, %d bytes%s", self.url, len(events), len(data), " (gzip)" if self.gzip else "")
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return _response(resp.status, resp.headers.get("Retry-After"), resp.read(_MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as e:
            try:
                raw = e.read(_MAX_RESPONSE_BYTES)
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                e.close()
            return _response(e.code, e.headers.get("Retry-After") if e.headers is not None else None, raw)
        except (OSError, http.client.HTTPException) as e:
            # URLError (refused, DNS), timeouts, resets, a connection closed without an answer.
            return Response(None, error=e)


def _response(status: int, retry_after: Optional[str], raw: bytes) -> Response:
    body: Any
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError):
        body = raw.decode("utf-8", "replace")
    return Response(status, body, parse_retry_after(retry_after))
