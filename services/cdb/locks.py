"""A lock for HTTP readers: taken if it comes soon, skipped otherwise.

A service's loop holds its state lock while it waits on a dead Redis or PostgreSQL; an HTTP
reader (``/status``, ``/metrics``, warnings) that queued behind it would hold one of the
server's few threads for the whole outage, until ``/livez`` itself could not be answered.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held(lock: threading.Lock, timeout: float = 1.0) -> Iterator[bool]:
    """Yield True holding ``lock`` if it was acquired within ``timeout`` seconds, else False
    (not holding it): the caller answers without the state, at once."""
    got = lock.acquire(timeout=timeout)
    try:
        yield got
    finally:
        if got:
            lock.release()
