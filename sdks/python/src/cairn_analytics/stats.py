"""The client's counters, readable at any time as ``client.stats()``."""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """A snapshot of a client's counters (events unless said otherwise).

    Attributes:
        queued: waiting to be sent right now.
        sent: accepted by capture (a 200 answer).
        dropped: not queued at all: the queue was full (``max_queue_size``) or the client was shut
            down. ``capture()`` returned ``None`` for these.
        failed: given up after being queued: refused by capture (400, 401, 413, another 4xx) or
            still failing after ``max_retries`` retries, or abandoned at shutdown; each is reported
            to ``on_error`` and logged.
        requests: HTTP requests made.
        retries: requests that repeated an earlier one after a network error, a 5xx or a 429.
    """

    queued: int = 0
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0


class Counters:
    """Thread-safe counters behind ``Stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_fork_in_child() -> None:
                counters = ref()
                if counters is not None:
                    counters._lock = threading.Lock()

            os.register_at_fork(after_in_child=after_fork_in_child)
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.requests = 0
        self.retries = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self, queued: int) -> Stats:
        with self._lock:
            return Stats(
                queued=queued,
                sent=self.sent,
                dropped=self.dropped,
                failed=self.failed,
                requests=self.requests,
                retries=self.retries,
            )
