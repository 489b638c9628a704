"""The SDK's exceptions and the error values it reports through ``on_error``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence


class CairnError(Exception):
    """Base class of every exception this SDK raises."""


class InvalidEventError(CairnError, ValueError):
    """An event given to ``capture()`` (or ``identify``/``set``/``alias``) cannot be sent.

    Raised in the caller's thread, before anything is queued: an empty event name or distinct_id,
    properties that are not a dict, a value that has no JSON form, a malformed uuid or timestamp.
    """


@dataclass(frozen=True)
class FieldError:
    """One thing capture found wrong with one event.

    ``index`` is the event's position in the list handed to ``on_error`` (``None`` when the error
    concerns the whole request, e.g. the API key); ``field`` is e.g. ``"distinct_id"``, empty for
    the event as a whole; ``reason`` is capture's sentence fragment, e.g. ``"is required"``.
    """

    index: Optional[int]
    field: str
    reason: str


class DeliveryError(CairnError):
    """Why events were given up: reported to ``on_error`` together with those events.

    Attributes:
        status: the HTTP status of the last answer, or ``None`` after a network error.
        code: capture's error code (``invalid_events``, ``unauthorized``, ``payload_too_large``,
            ``rate_limited``, ``unavailable``, …) when its answer had one.
        message: what went wrong, for people.
        errors: capture's per-event errors, re-indexed to the events reported with this error.
        attempts: how many HTTP requests were made for these events.
    """

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        errors: Sequence[FieldError] = (),
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.errors: List[FieldError] = list(errors)
        self.attempts = attempts

    def __repr__(self) -> str:
        return (
            f"DeliveryError(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, errors={self.errors!r}, attempts={self.attempts!r})"
        )


#: The signature of ``on_error``: the error and the events (as sent, decoded from JSON) it concerns.
OnError = Callable[[DeliveryError, List[Dict[str, Any]]], None]
