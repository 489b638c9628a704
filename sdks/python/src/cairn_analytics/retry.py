"""When to retry a request, and how long to wait first.

Retried: network errors (no answer), every 5xx and 429. Not retried: any other status.
The wait is exponential backoff with full jitter, ``uniform(0, min(max_delay, base * 2**n))``
before the (n+1)-th retry, unless the answer carried ``Retry-After``, which is honoured (in
seconds or as an HTTP date) up to ``MAX_RETRY_AFTER``.
"""

from __future__ import annotations

import datetime as dt
import random
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

#: The longest ``Retry-After`` honoured, in seconds; longer ones are shortened to this.
MAX_RETRY_AFTER = 60.0


def is_retryable(status: Optional[int]) -> bool:
    """``None`` stands for a network error (no HTTP answer)."""
    return status is None or status == 429 or 500 <= status <= 599


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, base: float = 0.5, max_delay: float = 10.0, rng: Callable[[], float] = random.random) -> None:
        if base < 0 or max_delay < 0:
            raise ValueError("backoff delays must not be negative")
        self.base = base
        self.max_delay = max_delay
        self._rng = rng

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (0 for the first retry)."""
        return float(min(self.max_delay, self.base * (2 ** min(retry, 62))))

    def delay(self, retry: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``retry``; ``retry_after`` (from the answer) wins."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        return self._rng() * self.ceiling(retry)


def parse_retry_after(value: Optional[str], now: Optional[dt.datetime] = None) -> Optional[float]:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; ``None`` if absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
