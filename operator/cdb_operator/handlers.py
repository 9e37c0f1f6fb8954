"""kopf wiring: every trigger goes through the one idempotent reconcile.

``resume`` + ``create`` + ``update(field="spec")`` are stacked on one handler, so a
restarted operator re-reconciles every TradingBot. No handler needs a finalizer (owner
references clean up; kopf timers would add one), so deleting a TradingBot never waits
for the operator. Instead of kopf timers, a supervisor task started at startup polls each
tracked bot's breaker every few seconds, re-reconciles it on a resync interval, and at
once when one of its children changes or disappears (watched through kopf events).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from cdb_operator import metrics, model, reconcile
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
    ("networking.k8s.io", "v1", "networkpolicies"),
)


@dataclass
class Options:
    resync_seconds: float = 60.0
    breaker_poll_seconds: float = 2.0
    debounce_seconds: float = 0.5
    watch_timeout_seconds: int = 300
    max_backoff_seconds: float = 300.0


@dataclass
class Tracker:
    """The TradingBots this operator sees, their latest bodies, and which need a reconcile."""

    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    last_full: dict[Key, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def remember(self, key: Key, body: dict[str, Any]) -> None:
        self.bodies[key] = body
        self.last_full.setdefault(key, time.monotonic())

    def forget(self, key: Key) -> None:
        self.bodies.pop(key, None)
        self.dirty.discard(key)
        self.last_full.pop(key, None)

    def mark_dirty(self, key: Key) -> None:
        if key in self.bodies:
            self.dirty.add(key)
            self.wake.set()


def backoff(retry: int, limit: float) -> float:
    """10 s, 20 s, 40 s, ... up to ``limit``."""
    return min(limit, 10.0 * 2 ** min(retry, 10))


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _key(body: Any) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


async def supervise(ctx: reconcile.Context, tracker: Tracker, options: Options) -> None:
    """Poll breakers, resync on a timer, and reconcile bots whose children changed."""
    while True:
        try:
            await asyncio.wait_for(tracker.wake.wait(), timeout=options.breaker_poll_seconds)
            await asyncio.sleep(options.debounce_seconds)  # coalesce a burst of child events
        except TimeoutError:
            pass
        tracker.wake.clear()
        for key, body in list(tracker.bodies.items()):
            if body["metadata"].get("deletionTimestamp"):
                continue
            due = time.monotonic() - tracker.last_full.get(key, 0.0) >= options.resync_seconds
            try:
                if key in tracker.dirty or due:
                    tracker.dirty.discard(key)
                    tracker.last_full[key] = time.monotonic()
                    await asyncio.to_thread(reconcile.reconcile, ctx, body)
                else:
                    await asyncio.to_thread(reconcile.poll_breaker, ctx, body)
            except (reconcile.SpecInvalid, reconcile.CredentialsMissing, ApiError) as exc:
                log.info("%s/%s not reconciled: %s", *key, exc)
            except Exception:  # one bot's surprise must not stop the others
                log.exception("supervising %s/%s failed", *key)


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
        tasks.append(asyncio.create_task(supervise(ctx, tracker, options)))

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
        except (reconcile.CredentialsMissing, ApiError) as exc:
            raise kopf.TemporaryError(
                str(exc), delay=backoff(retry, options.max_backoff_seconds)
            ) from exc

    @kopf.on.event(*resource, registry=registry)
    def track(event: dict[str, Any], body: kopf.Body, **_: Any) -> None:
        key = _key(body)
        if event.get("type") == "DELETED":
            tracker.forget(key)
            metrics.forget(*key)
            ctx.last_status.pop(key, None)
            ctx.passwords.pop(key, None)
        else:
            tracker.remember(key, _plain(body))

    def child_changed(body: kopf.Body, **_: Any) -> None:
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
