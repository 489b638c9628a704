"""UUIDv7 (RFC 9562): a 48-bit Unix timestamp in milliseconds, the version (7), a 12-bit counter,
the variant (0b10) and 62 random bits.

Every event gets one at ``capture()`` time, so that a retried request carries the same ids and
Cairn counts each event once however often it is sent. Ids from one process are strictly
increasing: within a millisecond the 12-bit field counts up from a random start (RFC 9562
§6.2, method 1), and a clock that steps back does not make ids go back.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0

_COUNTER_MAX = 0xFFF


def _reset_lock_in_child() -> None:
    # Another thread may have held the lock at fork time; the child has only the forking thread.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def uuid7() -> uuid.UUID:
    """A new UUIDv7, greater than every one this process made before."""
    global _last_ms, _counter
    rand = int.from_bytes(os.urandom(10), "big")
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            # A random start leaves room for at least 2048 ids in the same millisecond.
            _counter = (rand >> 62) & 0x7FF
        else:
            _counter += 1
            if _counter > _COUNTER_MAX:
                # More than 4096 ids in one millisecond (or a clock that went back): borrow the
                # next millisecond rather than repeat or reorder.
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)


def uuid7_str() -> str:
    """A new UUIDv7 as lowercase hyphenated text."""
    return str(uuid7())


def timestamp_ms(u: uuid.UUID) -> int:
    """The Unix time in milliseconds that a UUIDv7 carries."""
    return u.int >> 80
