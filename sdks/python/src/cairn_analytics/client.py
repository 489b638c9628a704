"""The client: checks events in the caller's thread and hands them to the sending thread."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import urllib.parse
import weakref
from typing import Any, Dict, List, Mapping, Optional, Type

from .consumer import Worker
from .delivery import Delivery
from .errors import DeliveryError, OnError
from .events import QueuedEvent, Timestamp, UUIDLike, build_event, check_distinct_id, check_properties
from .retry import Backoff
from .stats import Counters, Stats
from .transport import Transport

log = logging.getLogger("cairn_analytics")

DEFAULT_HOST = "http://127.0.0.1:18000"


class Client:
    """Sends events to a Cairn capture service.

    ``capture()`` checks an event, gives it a UUIDv7 and queues it; a daemon thread sends the
    queue in batches (``POST {host}/batch``), retrying what can be retried with the same uuids, so
    that no event is stored twice. ``flush()`` waits for what was queued; ``shutdown()`` (also run
    at interpreter exit) sends the rest and stops the thread.

    Args:
        api_key: the project's write key (``phc_…``). Never logged.
        host: capture's base URL.
        flush_at: events per batch; a batch leaves as soon as this many are queued.
        flush_interval: seconds the oldest queued event may wait before a smaller batch leaves.
        max_queue_size: events the queue holds; when it is full the newest event is dropped
            (``capture()`` returns ``None``, ``stats().dropped`` counts it, a warning is logged).
        gzip: compress request bodies.
        max_retries: retries of a request after a network error, a 5xx or a 429.
        timeout: seconds to wait for capture's answer to one request.
        on_error: called as ``on_error(error, events)`` in the sending thread with a
            ``DeliveryError`` and the events (dicts, as sent) that were given up.
        disabled: make every call a no-op (nothing is checked, queued or sent).
        debug: log at DEBUG level (to stderr if logging is not configured).
        super_properties: properties added to every event (an event's own properties win).
        sync_mode: send each event in the calling thread before ``capture()`` returns (with the
            same retries); no thread, no queue.
        max_batch_bytes: largest JSON body of a batch (capture's own limit is 20 MB).
        backoff_base, backoff_max: the exponential backoff's first ceiling and its cap, in seconds.
        shutdown_timeout: how long ``shutdown()`` (and so interpreter exit) waits for the queue
            to drain before giving up what is left (reported like any failure); ``None`` waits
            until everything is sent or given up.
    """

    def __init__(
        self,
        api_key: str,
        host: str = DEFAULT_HOST,
        *,
        flush_at: int = 100,
        flush_interval: float = 0.5,
        max_queue_size: int = 10_000,
        gzip: bool = True,
        max_retries: int = 5,
        timeout: float = 10.0,
        on_error: Optional[OnError] = None,
        disabled: bool = False,
        debug: bool = False,
        super_properties: Optional[Mapping[str, Any]] = None,
        sync_mode: bool = False,
        max_batch_bytes: int = 5_000_000,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        shutdown_timeout: Optional[float] = 30.0,
    ) -> None:
        if not disabled and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty str (the project's write key)")
        if not isinstance(host, str):
            raise ValueError("host must be a str such as http://127.0.0.1:18000")
        parts = urllib.parse.urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"host must be an http:// or https:// URL, not {host!r}")
        _positive_int("flush_at", flush_at)
        _positive_int("max_queue_size", max_queue_size)
        _positive_int("max_batch_bytes", max_batch_bytes)
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries must be an int >= 0")
        for name, value in (("flush_interval", flush_interval), ("timeout", timeout)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0")
        if on_error is not None and not callable(on_error):
            raise ValueError("on_error must be callable as on_error(error, events)")

        self.api_key = api_key
        self.host = host
        self.disabled = disabled
        self.sync_mode = sync_mode
        self.on_error = on_error
        self.shutdown_timeout = shutdown_timeout
        self.super_properties: Dict[str, Any] = check_properties(super_properties, "super_properties")
        if debug:
            _enable_debug_logging()

        self._counters = Counters()
        self._abort = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._transport = Transport(host, api_key, gzip=gzip, timeout=float(timeout))
        self._delivery = Delivery(
            self._transport,
            max_retries=max_retries,
            backoff=Backoff(backoff_base, backoff_max),
            report=self._report,
            counters=self._counters,
            abort=self._abort,
        )
        self._worker = Worker(
            self._delivery.send,
            flush_at=flush_at,
            flush_interval=float(flush_interval),
            max_queue_size=max_queue_size,
            max_batch_bytes=max_batch_bytes,
        )
        self._atexit: Optional[Any] = None
        if not disabled and not sync_mode:
            ref = weakref.ref(self)

            def shutdown_at_exit() -> None:
                client = ref()
                if client is not None:
                    client._shutdown(client.shutdown_timeout, at_exit=True)

            self._atexit = shutdown_at_exit
            atexit.register(shutdown_at_exit)

    # -- events --------------------------------------------------------------------------------

    def capture(
        self,
        distinct_id: Any,
        event: str,
        properties: Optional[Mapping[str, Any]] = None,
        timestamp: Optional[Timestamp] = None,
        uuid: Optional[UUIDLike] = None,
    ) -> Optional[str]:
        """Queues an event and returns its uuid.

        Args:
            distinct_id: who did it: a non-empty str (at most 200 characters) or an int.
            event: the event name (a non-empty str, at most 200 characters).
            properties: a dict of JSON-able values (datetimes, Decimals, UUIDs, enums, sets and
                tuples are converted; see ``cairn_analytics.serialize``).
            timestamp: when it happened: an aware datetime, a naive one (taken as UTC) or RFC
                3339 text; now by default. Sent in UTC with milliseconds.
            uuid: the event's id; a new UUIDv7 by default. Capture stores each uuid once.

        Returns:
            The event's uuid, or ``None`` when the client is disabled, shut down, or its queue is
            full (the event was dropped: see ``stats().dropped``).

        Raises:
            InvalidEventError: the event cannot be sent as given (nothing was queued).
        """
        if self.disabled:
            return None
        queued = build_event(
            event, distinct_id, properties, timestamp, uuid, super_properties=self.super_properties
        )
        return self._enqueue(queued)

    def identify(
        self,
        distinct_id: Any,
        properties: Optional[Mapping[str, Any]] = None,
        timestamp: Optional[Timestamp] = None,
        uuid: Optional[UUIDLike] = None,
    ) -> Optional[str]:
        """Sets person properties: a ``$identify`` event with ``properties={"$set": properties}``."""
        return self._person_event(distinct_id, "$identify", "$set", properties, timestamp, uuid)

    def set(
        self,
        distinct_id: Any,
        properties: Mapping[str, Any],
        timestamp: Optional[Timestamp] = None,
        uuid: Optional[UUIDLike] = None,
    ) -> Optional[str]:
        """Sets person properties: a ``$set`` event with ``properties={"$set": properties}``."""
        return self._person_event(distinct_id, "$set", "$set", properties, timestamp, uuid)

    def set_once(
        self,
        distinct_id: Any,
        properties: Mapping[str, Any],
        timestamp: Optional[Timestamp] = None,
        uuid: Optional[UUIDLike] = None,
    ) -> Optional[str]:
        """Sets person properties not set before: ``$set_once`` with ``{"$set_once": properties}``."""
        return self._person_event(distinct_id, "$set_once", "$set_once", properties, timestamp, uuid)

    def alias(
        self,
        previous_id: Any,
        distinct_id: Any,
        timestamp: Optional[Timestamp] = None,
        uuid: Optional[UUIDLike] = None,
    ) -> Optional[str]:
        """Makes ``distinct_id`` another name of ``previous_id``, as PostHog's SDK does: a
        ``$create_alias`` event from ``previous_id`` with ``properties={"distinct_id": previous_id,
        "alias": distinct_id}``."""
        if self.disabled:
            return None
        previous = check_distinct_id(previous_id, "previous_id")
        alias = check_distinct_id(distinct_id)
        return self.capture(previous, "$create_alias", {"distinct_id": previous, "alias": alias}, timestamp, uuid)

    def _person_event(
        self,
        distinct_id: Any,
        event: str,
        key: str,
        properties: Optional[Mapping[str, Any]],
        timestamp: Optional[Timestamp],
        uuid: Optional[UUIDLike],
    ) -> Optional[str]:
        """An event whose properties are ``{key: properties}`` (person properties)."""
        if self.disabled:
            return None
        return self.capture(distinct_id, event, {key: check_properties(properties)}, timestamp, uuid)

    # -- sending -------------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything queued so far and waits until it was sent or given up.

        Returns ``False`` if ``timeout`` seconds passed first.
        """
        if self.disabled or self.sync_mode:
            return True
        return self._worker.flush(timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Sends what is queued, then stops the sending thread; later events are dropped.

        Waits at most ``timeout`` seconds (the client's ``shutdown_timeout`` by default); what is
        still unsent then is given up and reported. Returns ``True`` if nothing was left.
        Runs by itself at interpreter exit; calling it again does nothing.
        """
        return self._shutdown(self.shutdown_timeout if timeout is None else timeout, at_exit=False)

    def stats(self) -> Stats:
        """The client's counters (see ``Stats``)."""
        return self._counters.snapshot(self._worker.qsize())

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"Client(host={self.host!r}, disabled={self.disabled!r}, sync_mode={self.sync_mode!r})"

    # -- internals -----------------------------------------------------------------------------

    def _enqueue(self, event: QueuedEvent) -> Optional[str]:
        if self._closed:
            self._dropped("the client is shut down")
            return None
        if self.sync_mode:
            self._delivery.send([event])
            return event.uuid
        if not self._worker.put(event):
            self._dropped("the client is shut down" if self._closed else "the queue is full")
            return None
        return event.uuid

    def _dropped(self, why: str) -> None:
        self._counters.add("dropped")
        n = self._counters.dropped
        if n % 1000 == 1:
            log.warning("event dropped: %s (%d dropped so far; logged every 1000)", why, n)

    def _shutdown(self, timeout: Optional[float], *, at_exit: bool) -> bool:
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
        if self._atexit is not None and not at_exit:
            atexit.unregister(self._atexit)
        if self.disabled or self.sync_mode:
            return True
        if self._worker.stop(timeout):
            return True
        # Out of time: end the retries; what is left is reported as given up.
        left = self._worker.qsize()
        self._abort.set()
        self._worker.join(1.0)
        log.warning("shutdown: gave up waiting after %s s with %d events still queued", timeout, left)
        return False

    def _report(self, error: DeliveryError, events: List[QueuedEvent]) -> None:
        self._counters.add("failed", len(events))
        shown = ", ".join(f"{e.event!r} {e.uuid}" for e in events[:5])
        more = f" and {len(events) - 5} more" if len(events) > 5 else ""
        log.warning("%d events given up: %s [%s%s]", len(events), error.message, shown, more)
        if self.on_error is not None:
            try:
                self.on_error(error, [json.loads(e.body) for e in events])
            except Exception:
                log.exception("on_error raised")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1")


def _enable_debug_logging() -> None:
    log.setLevel(logging.DEBUG)
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
