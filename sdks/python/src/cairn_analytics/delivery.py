"""Getting one batch to capture, whatever capture answers.

A capture request is all-or-nothing, and every event carries the uuid it was given at
``capture()`` time, so sending the same events again is always safe (Cairn stores each uuid
once). What happens on each answer:

* **200** (any 2xx): the events are stored (capture answers only once Kafka has acknowledged).
* **network error, 5xx, 429**: the same events are sent again, after exponential backoff with full
  jitter or after ``Retry-After`` when the answer has one, up to ``max_retries`` times; then they
  are given up and reported.
* **400** naming events (``errors[].index``): exactly those events are given up and reported; the
  others are sent again at once, as a new request. A 400 that names no event gives up the batch.
* **413**: a batch of more than one event is split in half and each half is sent (and split again
  if need be); a single event that is still too large is given up and reported.
* **401, 3xx and any other 4xx**: not retried; the batch is given up and reported.

"Reported" means: counted in ``stats().failed``, logged as a warning (event names and uuids,
never properties or the API key), and handed to ``on_error`` with a ``DeliveryError``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import DeliveryError, FieldError
from .events import QueuedEvent
from .retry import Backoff, is_retryable
from .stats import Counters
from .transport import Response, Transport

log = logging.getLogger("cairn_analytics")

Reporter = Callable[[DeliveryError, List[QueuedEvent]], None]


class Delivery:
    def __init__(
        self,
        transport: Transport,
        *,
        max_retries: int,
        backoff: Backoff,
        report: Reporter,
        counters: Counters,
        abort: threading.Event,
    ) -> None:
        self._transport = transport
        self._max_retries = max_retries
        self._backoff = backoff
        self._report = report
        self._counters = counters
        self._abort = abort

    def send(self, batch: List[QueuedEvent]) -> None:
        """Delivers a batch or reports every event of it that could not be delivered."""
        pending: List[List[QueuedEvent]] = [batch]
        while pending:
            part = pending.pop(0)
            if not part:
                continue
            resp, attempts, aborted = self._post_with_retries(part)
            if aborted:
                remaining = [e for p in [part, *pending] for e in p]
                reason = "the client was shut down before these events could be delivered"
                if resp is not None and not resp.ok:
                    reason += f" (last answer: {resp.message()})"
                status = resp.status if resp is not None else None
                code = resp.error_code() if resp is not None else None
                self._report(DeliveryError(reason, status=status, code=code, attempts=attempts), remaining)
                return
            assert resp is not None
            if resp.ok:
                self._counters.add("sent", len(part))
                log.debug("capture accepted %d events", len(part))
                continue
            if resp.status == 400:
                rest = self._drop_named(part, resp, attempts)
                if rest is not None:
                    if rest:
                        log.info("resending the %d valid events of a refused batch", len(rest))
                        pending.insert(0, rest)
                    continue
            elif resp.status == 413 and len(part) > 1:
                mid = len(part) // 2
                log.info("capture answered 413 for %d events; sending them as two halves", len(part))
                pending[0:0] = [part[:mid], part[mid:]]
                continue
            self._report(self._error(resp, attempts), part)

    def _post_with_retries(self, events: List[QueuedEvent]) -> Tuple[Optional[Response], int, bool]:
        """The last answer, the number of requests, and whether shutdown cut the retries short."""
        bodies = [e.body for e in events]
        resp: Optional[Response] = None
        attempts = 0
        while True:
            if self._abort.is_set():
                return resp, attempts, True
            resp = self._transport.post(bodies)
            attempts += 1
            self._counters.add("requests")
            if resp.ok or not is_retryable(resp.status) or attempts > self._max_retries:
                return resp, attempts, False
            delay = self._backoff.delay(attempts - 1, resp.retry_after)
            log.info(
                "%s for %d events; retry %d of %d in %.2f s",
                resp.message(),
                len(events),
                attempts,
                self._max_retries,
                delay,
            )
            self._counters.add("retries")
            if delay > 0 and self._abort.wait(delay):
                return resp, attempts, True

    def _drop_named(self, part: List[QueuedEvent], resp: Response, attempts: int) -> Optional[List[QueuedEvent]]:
        """For a 400 naming events: reports those and returns the rest; ``None`` if none is named."""
        named: Dict[int, List[Dict[str, Any]]] = {}
        for err in resp.field_errors():
            index = err.get("index")
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(part):
                named.setdefault(index, []).append(err)
        if not named:
            return None
        order = sorted(named)
        errors = [
            FieldError(position, str(e.get("field", "")), str(e.get("reason", "")))
            for position, index in enumerate(order)
            for e in named[index]
        ]
        bad = [part[i] for i in order]
        self._report(
            DeliveryError(
                f"capture refused {len(bad)} of {len(part)} events: "
                + "; ".join(_describe(bad, e) for e in errors),
                status=400,
                code=resp.error_code(),
                errors=errors,
                attempts=attempts,
            ),
            bad,
        )
        keep = set(order)
        return [e for i, e in enumerate(part) if i not in keep]

    def _error(self, resp: Response, attempts: int) -> DeliveryError:
        if resp.status is None or is_retryable(resp.status):
            message = f"gave up after {attempts} requests: {resp.message()}"
        elif resp.status == 401:
            message = f"capture refused the API key: {resp.message()}"
        elif 300 <= resp.status <= 399:
            message = f"capture's address redirects ({resp.message()}); set host to the final address"
        else:
            message = f"capture refused the events: {resp.message()}"
        errors = [
            FieldError(None, str(e.get("field", "")), str(e.get("reason", ""))) for e in resp.field_errors()
        ]
        return DeliveryError(message, status=resp.status, code=resp.error_code(), errors=errors, attempts=attempts)


def _describe(events: List[QueuedEvent], err: FieldError) -> str:
    name = events[err.index].event if err.index is not None else "?"
    return " ".join(p for p in (f"event {name!r}:", err.field, err.reason) if p)
