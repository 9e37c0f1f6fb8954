"""The operator's own background work: which bots need what, and the two tasks doing it.

:class:`Tracker` holds the TradingBots kopf has shown us and which of them need a full
reconcile (``dirty``: a child changed) or a breaker observation right now (``urgent``:
the spec changed the breaker, or the risk manager confirmed a change). ``supervise``
runs the full reconciles (debounced, plus the resync timer); ``observe`` reads each bot's
breaker and market data from its Redis, at once when urgent and on the poll interval
otherwise, and keeps one :func:`cdb_operator.watch.watch_bot` task per bot. Neither
writes anything for an unchanged bot, so neither wakes itself up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cdb_operator import breaker, reconcile, stores, watch
from cdb_operator.apply import ApiError

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class Options:
    resync_seconds: float = 60.0
    #: The fallback poll of every bot's Redis (breaker, market data); confirmations of a
    #: breaker change do not wait for it (:mod:`cdb_operator.watch`).
    breaker_poll_seconds: float = 10.0
    debounce_seconds: float = 0.5
    watch_timeout_seconds: int = 300
    max_backoff_seconds: float = 300.0
    #: Block on each bot's control stream for the risk manager's confirmations.
    watch_breakers: bool = True
    #: Bots observed at once by the periodic poll (each is a short Redis round trip in a
    #: worker thread); urgent observations are not limited, so they never wait behind it.
    poll_concurrency: int = 4


@dataclass
class Tracker:
    """The TradingBots this operator sees, their latest bodies, and which need work.

    ``dirty`` bots get a full reconcile (after a short debounce that coalesces a burst of
    child events); ``urgent`` ones a breaker observation at once. Both sets are filled
    from kopf handlers and watcher tasks and drained by the supervisor tasks, all on the
    operator's event loop (:meth:`poke` and :meth:`mark_dirty` are safe from threads too).
    """

    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    urgent: set[Key] = field(default_factory=set)
    last_full: dict[Key, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    urgent_wake: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop | None = None

    def remember(self, key: Key, body: dict[str, Any]) -> None:
        self.bodies[key] = body
        self.last_full.setdefault(key, time.monotonic())

    def forget(self, key: Key) -> None:
        self.bodies.pop(key, None)
        self.dirty.discard(key)
        self.urgent.discard(key)
        self.last_full.pop(key, None)

    def _in_loop(self, fn: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or running is self.loop:
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)

    def mark_dirty(self, key: Key) -> None:
        def mark() -> None:
            if key in self.bodies:
                self.dirty.add(key)
                self.wake.set()

        self._in_loop(mark)

    def poke(self, key: Key) -> None:
        """Observe this bot's breaker now (a confirmation arrived, or the spec changed it)."""

        def mark() -> None:
            if key in self.bodies:
                self.urgent.add(key)
                self.urgent_wake.set()

        self._in_loop(mark)


def breaker_request_changed(body: dict[str, Any], last_status: dict[str, Any] | None) -> bool:
    """Whether the spec asks the breaker for something status does not show as requested."""
    wanted = (body.get("spec") or {}).get("circuitBreaker") or {}
    shown = ((last_status or body.get("status") or {}).get("breaker")) or {}
    return bool(wanted.get("engaged", False)) != bool(shown.get("requested", False)) or (
        wanted.get("reason", "") != shown.get("requestedReason", "")
    )


async def _run(ctx: reconcile.Context, fn: Callable[..., Any], key: Key, body: dict) -> None:
    try:
        await asyncio.to_thread(fn, ctx, body)
    except (
        reconcile.SpecInvalid,
        reconcile.CredentialsMissing,
        stores.StoreUnavailable,
        ApiError,
    ) as exc:
        log.info("%s/%s not reconciled: %s", *key, exc)
    except Exception:  # one bot's surprise must not stop the others
        log.exception("supervising %s/%s failed", *key)


async def supervise(ctx: reconcile.Context, tracker: Tracker, options: Options) -> None:
    """Full reconciles: of bots whose children changed (debounced) and on the resync timer."""
    while True:
        try:
            await asyncio.wait_for(tracker.wake.wait(), timeout=1.0)
            await asyncio.sleep(options.debounce_seconds)  # coalesce a burst of child events
        except TimeoutError:
            pass
        tracker.wake.clear()
        for key, body in list(tracker.bodies.items()):
            if body["metadata"].get("deletionTimestamp"):
                continue
            due = time.monotonic() - tracker.last_full.get(key, 0.0) >= options.resync_seconds
            if key in tracker.dirty or due:
                tracker.dirty.discard(key)
                tracker.last_full[key] = time.monotonic()
                await _run(ctx, reconcile.reconcile, key, body)


async def _address(ctx: reconcile.Context, key: Key) -> breaker.RedisAddress:
    password = ctx.passwords.get(key, {}).get("REDIS_PASSWORD")
    if password is None:
        secret = await asyncio.to_thread(
            ctx.kube.get, "v1", "Secret", key[0], f"{key[1]}-passwords"
        )
        password = reconcile.decode_secret(secret).get("REDIS_PASSWORD") if secret else None
    return ctx.address(key[0], key[1], password)


async def observe(ctx: reconcile.Context, tracker: Tracker, options: Options) -> None:
    """Breaker and market data: at once for ``urgent`` bots, every poll interval for all.

    Keeps one :func:`watch.watch_bot` task per tracked bot, which pokes its bot the moment
    the risk manager confirms a breaker change.
    """
    watchers: dict[Key, asyncio.Task] = {}
    running: set[asyncio.Task] = set()
    periodic: asyncio.Task | None = None
    limit = asyncio.Semaphore(options.poll_concurrency)
    next_poll = time.monotonic() + options.breaker_poll_seconds

    async def one(key: Key, limited: bool) -> None:
        body = tracker.bodies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        if not limited:  # urgent: never queued behind the periodic pass
            await _run(ctx, reconcile.poll_breaker, key, body)
            return
        async with limit:
            await _run(ctx, reconcile.poll_breaker, key, body)

    async def poll_all(keys: list[Key]) -> None:
        await asyncio.gather(*(one(k, limited=True) for k in keys))

    def spawn(coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        running.add(task)
        task.add_done_callback(running.discard)
        return task

    try:
        while True:
            timeout = max(0.0, next_poll - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.urgent_wake.wait(), timeout=timeout)
            tracker.urgent_wake.clear()
            try:
                if options.watch_breakers:
                    for key in set(watchers) - set(tracker.bodies):
                        watchers.pop(key).cancel()
                    for key in set(tracker.bodies) - set(watchers):
                        watchers[key] = asyncio.create_task(
                            watch.watch_bot(key, partial(_address, ctx, key), tracker.poke)
                        )
                for key in list(tracker.urgent):
                    spawn(one(key, limited=False))
                tracker.urgent.clear()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + options.breaker_poll_seconds
                    if periodic is None or periodic.done():  # a slow pass is not stacked
                        periodic = spawn(poll_all(list(tracker.bodies)))
            except Exception:  # the loop must outlive any surprise, or breakers go stale
                log.exception("observing the bots failed; continuing")
                await asyncio.sleep(1.0)
    finally:
        for task in [*watchers.values(), *running]:
            task.cancel()
        await asyncio.gather(*watchers.values(), *running, return_exceptions=True)
