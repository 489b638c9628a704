"""Test helpers: a real HTTP server on 127.0.0.1 that answers from a script and records requests."""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Union


class Recorded:
    """One request as the server received it."""

    def __init__(self, path: str, headers: Dict[str, str], raw: bytes, at: float) -> None:
        self.path = path
        self.headers = headers
        self.raw = raw
        self.at = at  # time.monotonic() on arrival
        data = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        self.text = data.decode("utf-8")
        self.body: Any = json.loads(self.text)

    @property
    def events(self) -> List[Dict[str, Any]]:
        return list(self.body["batch"])

    @property
    def uuids(self) -> List[str]:
        return [e["uuid"] for e in self.events]

    def __repr__(self) -> str:
        return f"Recorded({self.path}, {len(self.events)} events)"


class Reply:
    """A scripted answer. ``drop`` closes the connection without answering; ``delay`` waits first;
    ``gate`` (a threading.Event) holds the answer until it is set."""

    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        *,
        delay: float = 0.0,
        drop: bool = False,
        gate: Optional[threading.Event] = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.delay = delay
        self.drop = drop
        self.gate = gate


Script = Union[Reply, Callable[[Recorded], Reply]]


def accepted(req: Recorded) -> Reply:
    return Reply(200, {"status": 1, "accepted": len(req.events)})


class ScriptedServer:
    """Answers the n-th POST with the n-th scripted reply, then with ``default`` (200 by default)."""

    def __init__(self, *script: Script, default: Script = accepted) -> None:
        self.script: List[Script] = list(script)
        self.default = default
        self.requests: List[Recorded] = []
        self._lock = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                rec = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, raw, time.monotonic())
                with outer._lock:
                    outer.requests.append(rec)
                    step = outer.script.pop(0) if outer.script else outer.default
                    outer._lock.notify_all()
                reply = step(rec) if callable(step) else step
                if reply.gate is not None:
                    reply.gate.wait(30)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Waits until at least ``n`` requests arrived."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def events(self) -> List[Dict[str, Any]]:
        """Every event of every request, in arrival order (repeats included)."""
        with self._lock:
            return [e for r in self.requests for e in r.events]

    def batch_sizes(self) -> List[int]:
        with self._lock:
            return [len(r.events) for r in self.requests]


def error_body(code: str, message: str, errors: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"error": code, "message": message, "errors": errors}
