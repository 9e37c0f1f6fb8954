"""Event-driven breaker confirmation: block on each bot's ``control`` stream.

The risk manager confirms every breaker change with a ``breaker_state`` event on the
bot's ``control`` stream (``cdb.risk.guard``), right after writing ``BREAKER_KEY``. One
asyncio task per tracked bot blocks on that stream (``XREAD BLOCK``, no consumer group:
it only listens, the risk manager's group is untouched) and calls ``on_confirmation``
the moment such an event arrives, so ``status.breaker`` follows in one status patch
instead of at the next poll. A (re)connected watcher calls it once too, in case a
confirmation came while it was away. Redis errors are retried with a capped backoff; the
supervisor's periodic poll stays as the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis

from cdb.bus import CONTROL
from cdb_operator.breaker import RedisAddress

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: How long one XREAD blocks before it is re-issued (milliseconds).
BLOCK_MS = 5_000
#: Event types on the control stream that mean "the breaker hash changed".
CONFIRMATIONS = frozenset({"breaker_state"})


def confirms(fields: dict) -> bool:
    """Whether one control-stream entry is a risk-manager confirmation."""
    raw = fields.get(b"data", fields.get("data"))
    try:
        event = json.loads(raw)
    except (TypeError, ValueError):
        return False
    return isinstance(event, dict) and event.get("type") in CONFIRMATIONS


async def watch_bot(
    key: Key,
    address: Callable[[], Awaitable[RedisAddress]],
    on_confirmation: Callable[[Key], None],
    max_backoff: float = 5.0,
) -> None:
    """Block on one bot's control stream forever (until cancelled).

    ``address`` is awaited on every (re)connect, so a password made after the bot's
    creation is picked up.
    """
    retry = 0
    while True:
        client = None
        try:
            where = await address()
            client = aioredis.Redis(
                host=where.host,
                port=where.port,
                password=where.password,
                ssl=where.tls,
                socket_connect_timeout=3,
                socket_timeout=BLOCK_MS / 1000 + 5,
            )
            last: str | bytes = "0-0"  # no stream yet: everything that comes is new
            if await client.exists(CONTROL):
                last = (await client.xinfo_stream(CONTROL))["last-generated-id"]
            on_confirmation(key)  # anything missed while not listening
            retry = 0
            while True:
                reply = await client.xread({CONTROL: last}, block=BLOCK_MS, count=100)
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        if confirms(fields):
                            on_confirmation(key)
        except asyncio.CancelledError:
            raise
        except (redis.RedisError, OSError) as exc:
            log.debug("breaker watch %s/%s: %s", *key, exc)
        except Exception:  # never let one bot's watcher die silently
            log.exception("breaker watch %s/%s failed", *key)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        retry += 1
        await asyncio.sleep(min(max_backoff, 0.2 * 2 ** min(retry, 6)))
