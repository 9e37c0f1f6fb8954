"""The single-writer lock on a real Redis: one holder, refresh, expiry, release, dead holders."""

from __future__ import annotations

import socket
import subprocess
import sys

from helpers import wait_until

from cdb.execution.lock import LOCK_KEY, SingleWriterLock, holder_is_dead


def test_only_one_holder_and_takeover_after_the_lease_expires(redis_client):
    first = SingleWriterLock(redis_client, ttl_s=1)
    second = SingleWriterLock(redis_client, ttl_s=1)
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    assert second.holder() == first.token
    assert first.refresh()
    # the first stops refreshing (stalled): its lease runs out and the second takes over
    wait_until(second.acquire, message="takeover after the TTL")
    assert second.holder() == second.token
    assert not first.refresh() and not first.held  # the stalled holder learns it lost
    first.release()  # releasing a lock it does not hold must not free the other's
    assert redis_client.get(LOCK_KEY) == second.token.encode()
    second.release()
    assert redis_client.get(LOCK_KEY) is None


def test_a_dead_holder_on_this_host_is_replaced_at_once(redis_client):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid no longer exists
    host = socket.gethostname()
    redis_client.set(LOCK_KEY, f"{host}/{child.pid}/deadbeef", px=60_000)
    assert holder_is_dead(f"{host}/{child.pid}/deadbeef")
    lock = SingleWriterLock(redis_client, ttl_s=60)
    assert lock.acquire()
    assert redis_client.get(LOCK_KEY) == lock.token.encode()


def test_a_live_or_remote_holder_is_never_replaced(redis_client):
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for token in (f"{host}/{live.pid}/cafe", f"other-host/{live.pid}/cafe", "garbage"):
            redis_client.set(LOCK_KEY, token, px=60_000)
            assert not holder_is_dead(token)
            assert not SingleWriterLock(redis_client, ttl_s=60).acquire()
            assert redis_client.get(LOCK_KEY) == token.encode()
    finally:
        live.kill()
        live.wait()
