from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator, List, Tuple

import pytest

# Importable without PYTHONPATH too (pyproject's pythonpath does the same for pytest itself).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from _support import Script, ScriptedServer, accepted  # noqa: E402

from cairn_analytics import Client, DeliveryError  # noqa: E402

API_KEY = "phc_unit_secret_key_1234"


@pytest.fixture
def make_server() -> Iterator[Callable[..., ScriptedServer]]:
    servers: List[ScriptedServer] = []

    def make(*script: Script, default: Script = accepted) -> ScriptedServer:
        s = ScriptedServer(*script, default=default).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


class ErrorLog:
    """Collects what on_error receives."""

    def __init__(self) -> None:
        self.calls: List[Tuple[DeliveryError, List[dict]]] = []

    def __call__(self, error: DeliveryError, events: List[dict]) -> None:
        self.calls.append((error, events))

    @property
    def events(self) -> List[dict]:
        return [e for _, evs in self.calls for e in evs]


@pytest.fixture
def errors() -> ErrorLog:
    return ErrorLog()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Clients with short backoff (tests wait milliseconds, not seconds), shut down afterwards."""
    clients: List[Client] = []

    def make(host: str, **kwargs: Any) -> Client:
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        kwargs.setdefault("flush_interval", 0.05)
        c = Client(kwargs.pop("api_key", API_KEY), host, **kwargs)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.shutdown(timeout=5)
