"""Turning what a caller passes into JSON that capture accepts.

``to_json_value`` copies a value into plain JSON types (so that later changes to the caller's
objects do not change a queued event) and refuses, with the path of the offending value, what has
no faithful JSON form:

=====================================  ==============================================================
Python                                 JSON
=====================================  ==============================================================
``str``, ``int``, ``bool``, ``None``   as is
``float``                              as is; ``nan`` and ``inf`` are refused (JSON has no such number)
``decimal.Decimal``                    an integer when integral, else a float; NaN/infinity refused
``datetime.datetime``                  ISO 8601 text (``isoformat()``, offset kept when aware)
``datetime.date`` / ``datetime.time``  ISO 8601 text
``uuid.UUID``                          its hyphenated text
``enum.Enum``                          its value (converted in turn)
``bytes``, ``bytearray``               UTF-8 text; other bytes are refused
mapping                                an object; keys must be ``str`` (``int`` keys become text)
list, tuple, set, frozenset            an array
anything else                          refused
=====================================  ==============================================================

Text containing a lone surrogate (e.g. ``"\\ud800"``) is refused too: it is not valid Unicode and
capture would reject the whole request.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from decimal import Decimal
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Set, Union

from .errors import InvalidEventError

JSONValue = Union[None, bool, int, float, str, List[Any], Dict[str, Any]]


def to_json_value(value: Any, path: str = "properties") -> JSONValue:
    """A copy of ``value`` made of JSON types only; raises ``InvalidEventError`` naming ``path``."""
    try:
        return _convert(value, path, set())
    except RecursionError:
        raise InvalidEventError(f"{path} is nested too deeply to be sent as JSON") from None


def _convert(value: Any, path: str, active: Set[int]) -> JSONValue:
    # Enum first: an Enum may also be a str or int subclass.
    if isinstance(value, Enum):
        return _convert(value.value, path, active)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_text(value, path)
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEventError(f"{path} is {value!r}, which JSON cannot represent")
        return float(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidEventError(f"{path} is Decimal({str(value)!r}), which JSON cannot represent")
        if value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEventError(f"{path} holds bytes that are not UTF-8 text") from None
        return text
    if isinstance(value, Mapping):
        return _convert_mapping(value, path, active)
    if isinstance(value, (list, tuple, set, frozenset)):
        ident = id(value)
        if ident in active:
            raise InvalidEventError(f"{path} contains itself (a circular reference)")
        active.add(ident)
        try:
            return [_convert(v, f"{path}[{i}]", active) for i, v in enumerate(value)]
        finally:
            active.discard(ident)
    raise InvalidEventError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which has no JSON form; "
        "pass a str, number, bool, None, datetime, Decimal, UUID, list or dict"
    )


def _convert_mapping(value: Mapping[Any, Any], path: str, active: Set[int]) -> Dict[str, Any]:
    ident = id(value)
    if ident in active:
        raise InvalidEventError(f"{path} contains itself (a circular reference)")
    active.add(ident)
    try:
        out: Dict[str, Any] = {}
        for k, v in value.items():
            key = _key(k, path)
            out[key] = _convert(v, f"{path}[{key!r}]", active)
        return out
    finally:
        active.discard(ident)


def _key(k: Any, path: str) -> str:
    if isinstance(k, Enum):
        k = k.value
    if isinstance(k, str):
        _check_text(k, f"a key of {path}")
        return str(k)
    if isinstance(k, int) and not isinstance(k, bool):
        return str(int(k))
    raise InvalidEventError(f"{path} has a key of type {type(k).__name__} ({k!r}); keys must be str")


def _check_text(s: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEventError(f"{path} contains a lone surrogate, which is not valid Unicode") from None


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON of a value made by ``to_json_value`` (or of plain JSON types)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Timestamps


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def to_utc(value: Union[dt.datetime, str], path: str = "timestamp") -> dt.datetime:
    """An aware UTC datetime from a datetime (naive ones are taken as UTC) or RFC 3339 text."""
    if isinstance(value, str):
        parsed = parse_rfc3339(value)
        if parsed is None:
            raise InvalidEventError(
                f"{path} {value!r} is not an RFC 3339 date-time, e.g. 2026-01-31T12:00:00.000Z"
            )
        value = parsed
    if not isinstance(value, dt.datetime):
        raise InvalidEventError(f"{path} must be a datetime or RFC 3339 text, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    if value.year < 1970:
        raise InvalidEventError(f"{path} {format_timestamp(value)} is before 1970-01-01")
    return value


def parse_rfc3339(text: str) -> Optional[dt.datetime]:
    """Parses RFC 3339 text with a date, a time and an offset (``Z`` or ``±HH:MM``)."""
    s = text.strip()
    if len(s) < 20 or s[10] not in "Tt ":
        return None
    if s[-1] in "Zz":
        s = s[:-1] + "+00:00"
    # Python before 3.11 takes 3 or 6 fraction digits only: normalise to 6.
    head, sep, rest = s.partition(".")
    if sep:
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        if not digits:
            return None
        s = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        parsed = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def format_timestamp(value: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds (truncated), e.g. ``2026-01-31T12:00:00.123Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )
