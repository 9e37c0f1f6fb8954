"""kopf wiring: every trigger goes through the one idempotent reconcile.

``resume`` + ``create`` + ``update(field="spec")`` are stacked on one handler, so a
restarted operator re-reconciles every TradingBot. No handler needs a finalizer (owner
references clean up; kopf timers would add one), so deleting a TradingBot never waits
for the operator. Instead of kopf timers, two tasks started at startup do the rest:
``supervise`` re-reconciles each bot on a resync interval and soon after one of its
children changes or disappears (watched through kopf events); ``observe`` reads each
bot's breaker and market data from its Redis at once when the spec changes the breaker
or the risk manager confirms a change (it blocks on each bot's control stream:
:mod:`cdb_operator.watch`), and every poll interval as a fallback. A reconcile of an
unchanged bot writes nothing, so neither task wakes itself up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import kopf

from cdb_operator import breaker, metrics, model, reconcile, stores, watch
from cdb_operator.apply import ApiError
from cdb_operator.render.common import MANAGED_BY

log = logging.getLogger(__name__)

Key = tuple[str, str]
#: Children whose changes (a hand edit, a deletion, a readiness change) wake the supervisor.
WATCHED_CHILDREN = (
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("", "v1", "secrets"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("batch", "v1", "cronjobs"),
    ("batch", "v1", "jobs"),  # a restore Job finishing starts the services again
    ("networking.k8s.io", "v1", "networkpolicies"),
)


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
    #: Bots observed at once by the periodic poll (each is a short Redis round trip).
    poll_concurrency: int = 8


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


def backoff(retry: int, limit: float) -> float:
    """10 s, 20 s, 40 s, ... up to ``limit``."""
    return min(limit, 10.0 * 2 ** min(retry, 10))


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _key(body: Any) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


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
    limit = asyncio.Semaphore(options.poll_concurrency)
    next_poll = time.monotonic() + options.breaker_poll_seconds

    async def one(key: Key) -> None:
        body = tracker.bodies.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        async with limit:
            await _run(ctx, reconcile.poll_breaker, key, body)

    try:
        while True:
            timeout = max(0.0, next_poll - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.urgent_wake.wait(), timeout=timeout)
            tracker.urgent_wake.clear()
            if options.watch_breakers:
                for key in set(watchers) - set(tracker.bodies):
                    watchers.pop(key).cancel()
                for key in set(tracker.bodies) - set(watchers):
                    watchers[key] = asyncio.create_task(
                        watch.watch_bot(key, partial(_address, ctx, key), tracker.poke)
                    )
            if time.monotonic() >= next_poll:
                keys = set(tracker.bodies)
                next_poll = time.monotonic() + options.breaker_poll_seconds
            else:
                keys = set(tracker.urgent)
            tracker.urgent.clear()
            await asyncio.gather(*(one(k) for k in keys))
    finally:
        for task in watchers.values():
            task.cancel()
        await asyncio.gather(*watchers.values(), return_exceptions=True)


def build_registry(
    ctx: reconcile.Context,
    options: Options | None = None,
    login: Callable[..., Any] | None = None,
) -> kopf.OperatorRegistry:
    """A registry with every handler; ``login`` defaults to the kubernetes client's config."""
    options = options or Options()
    tracker = Tracker(bodies=ctx.bodies)
    registry = kopf.OperatorRegistry()
    resource = (model.GROUP, model.VERSION, model.PLURAL)
    tasks: list[asyncio.Task] = []

    kopf.on.login(registry=registry)(login or kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = f"{model.GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=model.GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=model.GROUP, key="last-handled-configuration"
        )
        settings.watching.server_timeout = options.watch_timeout_seconds
        settings.watching.client_timeout = options.watch_timeout_seconds + 30
        settings.watching.connect_timeout = 30
        settings.posting.level = logging.WARNING
        # The TradingBot CRD is installed before the operator runs; not watching CRDs keeps
        # the operator's RBAC to its own namespaced resources (no cluster-scoped grants).
        settings.scanning.disabled = True
        tracker.wake = asyncio.Event()
        tracker.urgent_wake = asyncio.Event()
        tracker.loop = asyncio.get_running_loop()
        tasks.append(asyncio.create_task(supervise(ctx, tracker, options)))
        tasks.append(asyncio.create_task(observe(ctx, tracker, options)))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    def reconcile_bot(body: kopf.Body, retry: int, **_: Any) -> None:
        plain = _plain(body)
        tracker.remember(_key(body), plain)
        tracker.last_full[_key(body)] = time.monotonic()
        try:
            reconcile.reconcile(ctx, plain)
        except reconcile.SpecInvalid as exc:
            raise kopf.PermanentError(str(exc)) from exc
        except (reconcile.CredentialsMissing, stores.StoreUnavailable, ApiError) as exc:
            raise kopf.TemporaryError(
                str(exc), delay=backoff(retry, options.max_backoff_seconds)
            ) from exc

    @kopf.on.event(*resource, registry=registry)
    async def track(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        key = _key(body)
        if event.get("type") == "DELETED":
            tracker.forget(key)
            metrics.forget(*key)
            ctx.last_status.pop(key, None)
            ctx.passwords.pop(key, None)
            ctx.buses.pop(key, None)
            return
        plain = _plain(body)
        tracker.remember(key, plain)
        if breaker_request_changed(plain, ctx.last_status.get(key)):
            tracker.poke(key)  # send the control now, not after the full reconcile

    async def child_changed(body: kopf.Body, **_: Any) -> None:
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == model.KIND and ref.get("apiVersion") == model.API_VERSION:
                tracker.mark_dirty((body["metadata"]["namespace"], ref["name"]))

    for group, version, plural in WATCHED_CHILDREN:
        kopf.on.event(
            group,
            version,
            plural,
            labels={"app.kubernetes.io/managed-by": MANAGED_BY},
            registry=registry,
            id=f"child-{plural}",
        )(child_changed)

    return registry
