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
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf

from cdb_operator import metrics, model, reconcile, stores
from cdb_operator.apply import ApiError
from cdb_operator.render.common import MANAGED_BY
from cdb_operator.supervisor import (
    Options,
    Tracker,
    breaker_request_changed,
    observe,
    supervise,
)

__all__ = ["Options", "Tracker", "build_registry", "observe", "supervise", "WATCHED_CHILDREN"]

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


def backoff(retry: int, limit: float) -> float:
    """10 s, 20 s, 40 s, ... up to ``limit``."""
    return min(limit, 10.0 * 2 ** min(retry, 10))


def _plain(body: Any) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _key(body: Any) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


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
    def reconcile_bot(
        body: kopf.Body, retry: int, reason: Any = None, old: Any = None, new: Any = None, **_: Any
    ) -> None:
        plain = _plain(body)
        key = _key(body)
        tracker.remember(key, plain)
        generation = plain["metadata"].get("generation") or 0
        seen = (ctx.last_status.get(key) or plain.get("status") or {}).get("observedGeneration")
        if (
            reason == kopf.Reason.UPDATE
            and seen == generation - 1
            and reconcile.breaker_only(old, new)
        ):
            # only the breaker changed: no child depends on it, so no pass over the children
            reconcile.poll_breaker(ctx, plain, applied=True)
            return
        tracker.last_full[key] = time.monotonic()
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
