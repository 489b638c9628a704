"""Building one event as capture expects it, and checking it, in the caller's thread.

An event leaves here already encoded as JSON, with its uuid (UUIDv7) and its timestamp fixed: a
queued event never changes again, so every retry sends the same bytes.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid as uuid_mod
from typing import Any, Dict, Mapping, Optional, Union

from .errors import InvalidEventError
from .serialize import encode, format_timestamp, to_json_value, to_utc, utc_now
from .uuid7 import uuid7
from .version import LIB_NAME, VERSION

log = logging.getLogger("cairn_analytics")

#: Capture's limits on an event name and a distinct_id, in characters.
MAX_EVENT_NAME_CHARS = 200
MAX_DISTINCT_ID_CHARS = 200

#: Property names that capture treats as the API key and never stores. The SDK leaves them out:
#: a ``token`` different from the client's key would also make capture refuse the whole request.
RESERVED_PROPERTIES = ("token", "api_key")

_warned_reserved = False

Timestamp = Union[dt.datetime, str]
UUIDLike = Union[uuid_mod.UUID, str]


class QueuedEvent:
    """One event ready to send: its uuid, its name (for logs) and its JSON."""

    __slots__ = ("uuid", "event", "body")

    def __init__(self, uuid: str, event: str, body: bytes) -> None:
        self.uuid = uuid
        self.event = event
        self.body = body

    def __repr__(self) -> str:
        return f"QueuedEvent(uuid={self.uuid!r}, event={self.event!r}, bytes={len(self.body)})"


def check_event_name(event: Any) -> str:
    if not isinstance(event, str):
        raise InvalidEventError(f"event must be a str, not {type(event).__name__}")
    if not event.strip():
        raise InvalidEventError("event must not be empty")
    if len(event) > MAX_EVENT_NAME_CHARS:
        raise InvalidEventError(f"event must be at most {MAX_EVENT_NAME_CHARS} characters")
    to_json_value(event, "event")
    return event


def check_distinct_id(distinct_id: Any, field: str = "distinct_id") -> str:
    """A distinct_id as text: a non-empty str (at most 200 characters) or an int."""
    if isinstance(distinct_id, int) and not isinstance(distinct_id, bool):
        return str(int(distinct_id))
    if isinstance(distinct_id, uuid_mod.UUID):
        return str(distinct_id)
    if not isinstance(distinct_id, str):
        raise InvalidEventError(f"{field} must be a str, not {type(distinct_id).__name__}")
    if not distinct_id.strip():
        raise InvalidEventError(f"{field} must not be empty")
    if len(distinct_id.strip()) > MAX_DISTINCT_ID_CHARS:
        raise InvalidEventError(f"{field} must be at most {MAX_DISTINCT_ID_CHARS} characters")
    to_json_value(distinct_id, field)
    return str(distinct_id)


def check_properties(properties: Any, field: str = "properties") -> Dict[str, Any]:
    """A JSON copy of a properties dict (``None`` is an empty one)."""
    if properties is None:
        return {}
    if not isinstance(properties, Mapping):
        raise InvalidEventError(f"{field} must be a dict, not {type(properties).__name__}")
    converted = to_json_value(properties, field)
    assert isinstance(converted, dict)
    return converted


def check_uuid(value: Optional[UUIDLike]) -> str:
    if value is None:
        return str(uuid7())
    if isinstance(value, uuid_mod.UUID):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = uuid_mod.UUID(value)
        except ValueError:
            raise InvalidEventError(f"uuid {value!r} is not a UUID") from None
    else:
        raise InvalidEventError(f"uuid must be a str or uuid.UUID, not {type(value).__name__}")
    if parsed.int == 0:
        raise InvalidEventError("uuid must not be the nil UUID")
    return str(parsed)


def build_event(
    event: Any,
    distinct_id: Any,
    properties: Any = None,
    timestamp: Optional[Timestamp] = None,
    uuid: Optional[UUIDLike] = None,
    *,
    super_properties: Optional[Mapping[str, Any]] = None,
) -> QueuedEvent:
    """Checks and encodes one event; raises ``InvalidEventError`` for anything capture would refuse."""
    name = check_event_name(event)
    did = check_distinct_id(distinct_id)
    props = check_properties(properties)
    merged: Dict[str, Any] = dict(super_properties) if super_properties else {}
    merged.update(props)
    merged.setdefault("$lib", LIB_NAME)
    merged.setdefault("$lib_version", VERSION)
    for key in RESERVED_PROPERTIES:
        if key in merged:
            del merged[key]
            _warn_reserved(key)
    when = utc_now() if timestamp is None else to_utc(timestamp)
    event_uuid = check_uuid(uuid)
    body = encode(
        {
            "event": name,
            "distinct_id": did,
            "properties": merged,
            "timestamp": format_timestamp(when),
            "uuid": event_uuid,
        }
    )
    return QueuedEvent(event_uuid, name, body)


def _warn_reserved(key: str) -> None:
    global _warned_reserved
    if not _warned_reserved:
        _warned_reserved = True
        log.warning(
            "the property %r was left out: capture treats it as the API key and never stores it "
            "(this is logged once)",
            key,
        )
