"""The background thread: a bounded queue of events, sent in batches.

A batch leaves when ``flush_at`` events are queued, when the oldest queued event has waited
``flush_interval`` seconds, when ``flush()`` asks, or when the worker is stopping; it holds at most
``flush_at`` events and at most ``max_batch_bytes`` of JSON (but always at least one event).
Batches are sent one after the other, in the order the events were queued.

The queue holds at most ``max_queue_size`` events. When it is full the **newest** event is
refused: ``put()`` returns ``False`` and the event is not queued (the client counts it as
dropped and logs a warning). Events already queued are never displaced.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple

from ..events import QueuedEvent

log = logging.getLogger("cairn_analytics")

Deliver = Callable[[List[QueuedEvent]], None]


class Worker:
    def __init__(
        self,
        deliver: Deliver,
        *,
        flush_at: int,
        flush_interval: float,
        max_queue_size: int,
        max_batch_bytes: int,
        name: str = "cairn-analytics",
    ) -> None:
        self._deliver = deliver
        self._flush_at = flush_at
        self._flush_interval = flush_interval
        self._max_queue_size = max_queue_size
        self._max_batch_bytes = max_batch_bytes
        self._name = name
        self._reset()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_fork_in_child() -> None:
                worker = ref()
                if worker is not None:
                    worker._reset()

            os.register_at_fork(after_in_child=after_fork_in_child)

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread does not exist there, and the events
        # queued before the fork are the parent's to send.
        self._cond = threading.Condition(threading.Lock())
        # (time queued on the monotonic clock, event), oldest first.
        self._queue: Deque[Tuple[float, QueuedEvent]] = deque()
        self._enqueued = 0  # events ever queued
        self._done = 0  # events taken off the queue and handled (sent or given up)
        self._flush_upto = 0  # a flush() waits for events up to this count: send them now
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    # -- producer side -------------------------------------------------------------------------

    def put(self, event: QueuedEvent) -> bool:
        """Queues an event; ``False`` if the queue is full or the worker is stopping."""
        with self._cond:
            if self._stopping or len(self._queue) >= self._max_queue_size:
                return False
            if not self._ensure_thread():
                return False
            self._queue.append((time.monotonic(), event))
            self._enqueued += 1
            n = len(self._queue)
            if n == 1 or n >= self._flush_at:
                self._cond.notify_all()
            return True

    def qsize(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Sends everything queued so far now; blocks until it was sent or given up.

        Returns ``False`` if ``timeout`` seconds passed first (or if called from the worker thread
        itself, e.g. from ``on_error``, where waiting would never end).
        """
        if threading.current_thread() is self._thread:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            if self._done >= target:
                return True
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            while self._done < target:
                if self._thread is None or not self._thread.is_alive():
                    return False
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            return True

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Refuses new events, sends what is queued and ends the thread.

        Returns ``True`` when the thread has ended (everything was sent or given up) within
        ``timeout`` seconds.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> bool:
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _ensure_thread(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError as e:  # e.g. "can't create new thread at interpreter shutdown"
            log.warning("cannot start the sending thread (%s); the event was not queued", e)
            return False
        self._thread = thread
        return True

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    n = len(self._queue)
                    if n == 0:
                        if self._stopping:
                            return
                        self._cond.wait()
                        continue
                    if n >= self._flush_at or self._stopping or self._flush_upto > self._done:
                        break
                    wait = self._queue[0][0] + self._flush_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                batch = self._take()
            try:
                self._deliver(batch)
            except Exception:  # a bug must not end the thread and strand the queue
                log.exception("unexpected error while sending %d events", len(batch))
            finally:
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()

    def _take(self) -> List[QueuedEvent]:
        batch: List[QueuedEvent] = []
        size = 0
        while self._queue and len(batch) < self._flush_at:
            event = self._queue[0][1]
            if batch and size + len(event.body) + 1 > self._max_batch_bytes:
                break
            self._queue.popleft()
            batch.append(event)
            size += len(event.body) + 1
        return batch
