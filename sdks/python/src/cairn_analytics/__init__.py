"""Cairn's Python SDK.

Either make a ``Client``::

    from cairn_analytics import Client
    cairn = Client("phc_...", host="https://capture.example.com")
    cairn.capture("user-1", "signed_up", {"plan": "pro"})

or configure the module and use its functions, as with PostHog's SDK::

    import cairn_analytics
    cairn_analytics.api_key = "phc_..."
    cairn_analytics.host = "https://capture.example.com"
    cairn_analytics.capture("user-1", "signed_up", {"plan": "pro"})

The module's functions share one client, made from the module's settings at the first call;
change a setting afterwards and call ``shutdown()`` for it to take effect on the next call.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, Optional

from .api import ApiError, EventsApi
from .client import DEFAULT_HOST, Client
from .errors import CairnError, DeliveryError, FieldError, InvalidEventError, OnError
from .events import Timestamp, UUIDLike
from .stats import Stats
from .version import VERSION

__version__ = VERSION

__all__ = [
    "ApiError",
    "EventsApi",
    "Client",
    "CairnError",
    "DeliveryError",
    "FieldError",
    "InvalidEventError",
    "Stats",
    "capture",
    "identify",
    "set",
    "set_once",
    "alias",
    "flush",
    "shutdown",
    "stats",
    "DEFAULT_HOST",
    "VERSION",
]

# Settings of the module-level client (see Client for each).
api_key: Optional[str] = None
host: str = DEFAULT_HOST
flush_at: int = 100
flush_interval: float = 0.5
max_queue_size: int = 10_000
gzip: bool = True
max_retries: int = 5
timeout: float = 10.0
on_error: Optional[OnError] = None
disabled: bool = False
debug: bool = False
super_properties: Optional[Mapping[str, Any]] = None
sync_mode: bool = False

#: The client behind the module's functions; made at the first call.
default_client: Optional[Client] = None
_lock = threading.Lock()


def _client() -> Client:
    global default_client
    with _lock:
        if default_client is None:
            if not disabled and not api_key:
                raise CairnError("set cairn_analytics.api_key (the project's write key) before sending events")
            default_client = Client(
                api_key or "",
                host,
                flush_at=flush_at,
                flush_interval=flush_interval,
                max_queue_size=max_queue_size,
                gzip=gzip,
                max_retries=max_retries,
                timeout=timeout,
                on_error=on_error,
                disabled=disabled,
                debug=debug,
                super_properties=super_properties,
                sync_mode=sync_mode,
            )
        return default_client


def capture(
    distinct_id: Any,
    event: str,
    properties: Optional[Mapping[str, Any]] = None,
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
) -> Optional[str]:
    """``Client.capture`` on the module's client."""
    return _client().capture(distinct_id, event, properties, timestamp, uuid)


def identify(
    distinct_id: Any,
    properties: Optional[Mapping[str, Any]] = None,
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
) -> Optional[str]:
    """``Client.identify`` on the module's client."""
    return _client().identify(distinct_id, properties, timestamp, uuid)


def set(  # noqa: A001 (PostHog's name)
    distinct_id: Any,
    properties: Mapping[str, Any],
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
) -> Optional[str]:
    """``Client.set`` on the module's client."""
    return _client().set(distinct_id, properties, timestamp, uuid)


def set_once(
    distinct_id: Any,
    properties: Mapping[str, Any],
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
) -> Optional[str]:
    """``Client.set_once`` on the module's client."""
    return _client().set_once(distinct_id, properties, timestamp, uuid)


def alias(
    previous_id: Any,
    distinct_id: Any,
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
) -> Optional[str]:
    """``Client.alias`` on the module's client."""
    return _client().alias(previous_id, distinct_id, timestamp, uuid)


def flush(timeout: Optional[float] = None) -> bool:
    """``Client.flush`` on the module's client (``True`` if there is none yet)."""
    client = default_client
    return True if client is None else client.flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Shuts the module's client down; the next call makes a new one from the settings."""
    global default_client
    with _lock:
        client, default_client = default_client, None
    return True if client is None else client.shutdown(timeout)


def stats() -> Stats:
    """``Client.stats`` of the module's client (zeros if there is none yet)."""
    client = default_client
    return Stats() if client is None else client.stats()
