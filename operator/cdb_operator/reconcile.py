"""One idempotent, level-based reconcile of a TradingBot, shared by every trigger.

kopf's create/update/resume handlers, the resync timer and child-object events all end
here: render the children, create-or-patch them, prune what the spec no longer wants,
drive the circuit breaker, then write status explicitly (conditions, phase, components,
breaker) and post an Event for every condition that changed.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from cdb_operator import breaker, conditions, dependencies, metrics, restore, stores
from cdb_operator.apply import ApiError, Kube
from cdb_operator.conditions import Cond
from cdb_operator.model import parse_spec
from cdb_operator.observation import clean as _clean
from cdb_operator.observation import sync_breaker
from cdb_operator.render import Bot, key_of, render_children, render_secret
from cdb_operator.render.cnpg import KIND as CNPG_KIND
from cdb_operator.render.cnpg import cluster_readiness
from cdb_operator.render.common import MANAGED_BY
from cdb_operator.render.config import CREDENTIAL_KEYS, SECRET_KEYS, secret_name
from cdb_operator.render.monitoring import API_VERSION as MONITORING_API

Key = tuple[str, str]
#: Kinds removed when the spec stops asking for them (policies off, backup off, monitoring off).
PRUNABLE = (
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
    # the optional advisor's Deployment and Service go when spec.advisor.enabled turns false
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("batch/v1", "CronJob"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("policy/v1", "PodDisruptionBudget"),
)
#: Conditions about the data stores, kept as they were when a reconcile fails elsewhere.
STORE_CONDITIONS = (conditions.POSTGRES_READY, conditions.REDIS_READY, conditions.BUS_DURABLE)
WORKLOADS = ("Deployment", "StatefulSet")


class SpecInvalid(Exception):
    """The spec cannot be reconciled as written: needs a person to fix the TradingBot."""


class CredentialsMissing(Exception):
    """Live mode without its credentials Secret: resolves itself once the Secret exists."""


@dataclass
class Context:
    """Everything the reconcile needs, passed in (kopf's memo carries it)."""

    kube: Kube
    #: (namespace, bot name, Redis password) → where to reach that bot's Redis.
    redis_address: Callable[[str, str, str | None], breaker.RedisAddress]
    resend_after: float = 30.0
    #: The operator's own namespace (admitted to each bot's Redis by its NetworkPolicy).
    operator_namespace: str = "cdb-system"
    clock: Callable[[], float] = time.time
    #: Market data older than this (seconds) makes ``MarketData`` False (reason NoData).
    market_stale_after: float = 300.0
    #: Whether bots may use postgres.mode cloudnativepg (``--cloudnativepg``; the chart
    #: grants CloudNativePG clusters only then).
    cloudnativepg: bool = False
    #: Bots with an external Redis (redis.mode external) → where the operator reaches it.
    buses: dict[Key, breaker.RedisAddress] = field(default_factory=dict)
    passwords: dict[Key, dict[str, str]] = field(default_factory=dict)
    #: The newest body seen of each bot (kopf events and handlers keep it current): a
    #: reconcile started with an older body must not act on a spec already superseded.
    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)
    last_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def address(self, namespace: str, name: str, password: str | None) -> breaker.RedisAddress:
        """Where the bot's bus is: its external Redis, or ``redis_address`` (embedded)."""
        return self.buses.get((namespace, name)) or self.redis_address(namespace, name, password)


def service_dns_address(template: str = "{name}-redis.{namespace}.svc:6379"):
    """The default way to reach a bot's Redis: its headless Service's DNS name."""

    def locate(namespace: str, name: str, password: str | None) -> breaker.RedisAddress:
        host, _, port = template.format(name=name, namespace=namespace).rpartition(":")
        return breaker.RedisAddress(host, int(port), password)

    return locate


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def decode_secret(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's values as text (``data`` decoded, ``stringData`` as is)."""
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})  # only emulators keep stringData as such
    return out


def ensure_secret(ctx: Context, bot: Bot) -> tuple[dict[str, str], list[str]]:
    """The generated passwords: made once, never rewritten; only missing keys are added."""
    live = ctx.kube.get("v1", "Secret", bot.namespace, secret_name(bot))
    if live is None:
        passwords = {k: secrets.token_urlsafe(32) for k in SECRET_KEYS}
        try:
            ctx.kube.create(render_secret(bot, passwords))
            return passwords, ["generated the Redis and PostgreSQL passwords"]
        except ApiError as exc:
            if exc.status != 409:
                raise
            live = ctx.kube.get("v1", "Secret", bot.namespace, secret_name(bot)) or {}
    values = decode_secret(live)
    missing = [k for k in SECRET_KEYS if not values.get(k)]
    if not missing:
        return {k: values[k] for k in SECRET_KEYS}, []
    added = {k: secrets.token_urlsafe(32) for k in missing}
    ctx.kube.patch(render_secret(bot, {**values, **added}), {"stringData": added})
    return {**values, **added}, [f"added missing password keys {', '.join(missing)}"]


def check_credentials(ctx: Context, bot: Bot) -> None:
    name = bot.spec.exchange.credentials_secret
    if bot.spec.exchange.mode != "live":
        return
    if not name:
        raise SpecInvalid("exchange.credentialsSecret is required in live mode")
    secret = ctx.kube.get("v1", "Secret", bot.namespace, name)
    if secret is None:
        raise CredentialsMissing(f"credentials Secret {name!r} not found in {bot.namespace}")
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    absent = [k for k in CREDENTIAL_KEYS if k not in keys]
    if absent:
        raise CredentialsMissing(f"credentials Secret {name!r} lacks {', '.join(absent)}")


def readiness(live: dict[str, Any], kind: str) -> dict[str, Any]:
    """``status.components[x]`` of one workload (``kind`` given: LIST items carry none)."""
    want = int((live.get("spec") or {}).get("replicas", 1) or 0)
    ready = int((live.get("status") or {}).get("readyReplicas", 0) or 0)
    return {
        "kind": kind,
        "ready": want > 0 and ready >= want,
        "readyReplicas": ready,
        "replicas": want,
    }


def list_children(ctx: Context, bot: Bot, kinds) -> dict[tuple[str, str], dict[str, dict]]:
    """The bot's live children by kind and name: one LIST per kind instead of a GET each."""
    selector = f"app.kubernetes.io/instance={bot.name},app.kubernetes.io/managed-by={MANAGED_BY}"
    out: dict[tuple[str, str], dict[str, dict]] = {}
    for api_version, kind in kinds:
        items = ctx.kube.list(api_version, kind, bot.namespace, selector)
        out[(api_version, kind)] = {i["metadata"]["name"]: i for i in items}
    return out


def prune(
    ctx: Context,
    bot: Bot,
    desired: set[tuple[str, str, str]],
    live: dict[tuple[str, str], dict[str, dict]],
    kinds,
) -> list[str]:
    """Delete children of kinds the spec can switch off that are no longer rendered."""
    removed = []
    for api_version, kind in kinds:
        for item in live.get((api_version, kind), {}).values():
            meta = item.get("metadata", {})
            owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
            if bot.uid not in owners or (api_version, kind, meta.get("name")) in desired:
                continue
            ctx.kube.delete(api_version, kind, bot.namespace, meta["name"])
            removed.append(f"{kind} {meta['name']}")
    return removed


def _conds_from(status: dict[str, Any]) -> list[Cond]:
    return [
        Cond(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions") or []
    ]


def write_status(
    ctx: Context,
    body: dict[str, Any],
    previous: dict[str, Any],
    new: dict[str, Any],
    conds: list[Cond],
    extra_events: list[tuple[str, str, str]],
    full: bool = True,
) -> dict[str, Any]:
    """Patch status when it changed, and post an Event per changed condition.

    Only a ``full`` reconcile advances ``observedGeneration``: a breaker-only refresh has not
    applied a newer spec to the children.
    """
    ns, name = _key(body)
    generation = body["metadata"].get("generation") if full else previous.get("observedGeneration")
    if "breaker" in new:
        metrics.observe_breaker(ns, name, new["breaker"])
    status = {
        **new,
        "phase": conditions.phase(conds),
        "conditions": conditions.merge(previous.get("conditions"), conds, ctx.clock(), generation),
    }
    if generation is not None:
        status["observedGeneration"] = generation
    if not previous or any(_clean(previous.get(k)) != _clean(v) for k, v in status.items()):
        ctx.kube.patch_status(ns, name, status)
        ctx.last_status[(ns, name)] = _clean({**previous, **status})
    for cond in conditions.transitions(previous.get("conditions"), conds):
        text = f"{cond.type} is {cond.status}: {cond.message}".rstrip(": ")
        ctx.kube.post_event(body, conditions.event_type(cond), cond.reason, text)
    for type_, reason, message in extra_events:
        ctx.kube.post_event(body, type_, reason, message)
    return status


def freshest(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    newest = ctx.bodies.get(_key(body))
    if newest is not None and newest["metadata"].get("uid") == body["metadata"].get("uid"):
        return newest
    return body


def previous_status(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """The newest status we know: what we last wrote, or the body's (after a restart)."""
    return ctx.last_status.get(_key(body)) or dict(body.get("status") or {})


def reconcile(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Bring every child of the TradingBot in ``body`` to its spec; returns the new status.

    Raises :class:`SpecInvalid` (permanent), or :class:`CredentialsMissing` /
    :class:`ApiError` (retried) *after* writing them to status and Events.
    """
    with metrics.RECONCILE_SECONDS.time():
        try:
            status = _reconcile(ctx, body)
        except Exception as exc:
            metrics.RECONCILES.labels(type(exc).__name__).inc()
            raise
    metrics.RECONCILES.labels("ok").inc()
    return status


def _reconcile(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    ns, name = _key(body)
    with ctx.lock((ns, name)):
        body = freshest(ctx, body)
        previous = previous_status(ctx, body)
        try:
            spec = parse_spec(body.get("spec"))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"spec.{where}: {first['msg']}"
            conds = conditions.component_conditions({}, message, "SpecInvalid")
            write_status(ctx, body, previous, {}, conds, [])
            raise SpecInvalid(message) from None
        bot = Bot(name, ns, body["metadata"].get("uid", ""), spec)
        components: dict[str, Any] = {}
        events: list[tuple[str, str, str]] = []
        error: Exception | None = None
        reason = None
        monitoring = False
        restore_status = previous.get("restore") or {}
        store_conds: list[Cond] = []
        try:
            check_credentials(ctx, bot)
            stores.check_cloudnativepg(ctx.kube, bot, ctx.cloudnativepg)
            bus = stores.redis_address(ctx.kube, bot)
            if bus is None:
                ctx.buses.pop((ns, name), None)
            else:
                ctx.buses[(ns, name)] = bus
            pg_password = stores.postgres_password(ctx.kube, bot)
            monitoring_api = ctx.kube.api_exists(MONITORING_API)
            if spec.monitoring.service_monitor != "disabled":
                monitoring = monitoring_api
                if not monitoring and spec.monitoring.service_monitor == "enabled":
                    events.append(
                        (
                            "Warning",
                            "MonitoringUnavailable",
                            f"{MONITORING_API} is not served: no ServiceMonitor",
                        )
                    )
            bot = Bot(name, ns, bot.uid, spec, monitoring_api, ctx.operator_namespace)
            passwords, notes = ensure_secret(ctx, bot)
            ctx.passwords[(ns, name)] = passwords
            events += [("Normal", "Passwords", note) for note in notes]
            restore_status, restore_events = restore.sync(
                ctx.kube, bot, previous.get("restore"), ctx.clock()
            )
            events += restore_events
            bot = replace(bot, restoring=restore.under_way(bot, restore_status))
            children = render_children(bot)
            prunable = [k for k in PRUNABLE if k[0] != MONITORING_API or monitoring_api]
            kinds = list(
                dict.fromkeys([*((o["apiVersion"], o["kind"]) for o in children), *prunable])
            )
            existing = list_children(ctx, bot, kinds)
            changed = []
            for obj in children:
                # a child absent from the list (e.g. its labels were edited away) is created;
                # the 409 that follows makes ensure() fetch and patch it instead
                found = existing[(obj["apiVersion"], obj["kind"])].get(obj["metadata"]["name"])
                outcome, live = ctx.kube.ensure(obj, found)
                if outcome != "unchanged":
                    changed.append(f"{outcome} {obj['kind']} {obj['metadata']['name']}")
                if obj["kind"] in WORKLOADS:
                    components[obj["metadata"]["labels"]["app.kubernetes.io/component"]] = (
                        readiness(live, obj["kind"])
                    )
                elif obj["kind"] == CNPG_KIND:
                    components["postgres"] = cluster_readiness(live)
                    store_conds.append(stores.cluster_condition(components["postgres"], live))
            desired = {key_of(o) for o in children}
            changed += [f"deleted {r}" for r in prune(ctx, bot, desired, existing, prunable)]
            if changed:
                events.append(("Normal", "Applied", "; ".join(changed)))
            if pg_password is not None:
                store_conds.append(stores.probe_postgres(bot, pg_password))
            if bus is not None:
                store_conds += stores.probe_redis(bus)
        except stores.StoreUnavailable as exc:
            error, reason = exc, exc.reason
            store_conds = stores.unavailable_conditions(exc)
        except SpecInvalid as exc:
            error, reason = exc, "SpecInvalid"
        except CredentialsMissing as exc:
            error, reason = exc, "CredentialsSecretMissing"
        except ApiError as exc:
            error, reason = exc, "ApiError"
        password = ctx.passwords.get((ns, name), {}).get("REDIS_PASSWORD")
        breaker_status, market_cond = sync_breaker(
            ctx, body, spec, previous.get("breaker") or {}, password
        )
        conds = conditions.component_conditions(components, str(error) if error else None, reason)
        if error is None and components:  # an outage: which dependency the services wait for
            address = ctx.address(ns, name, password)
            conds = dependencies.observe(conds, components, address, previous.get("conditions"))
        conds += [breaker.condition(breaker_status), market_cond]
        if error is not None and not store_conds:  # unknown now: keep what was seen
            store_conds = [c for c in _conds_from(previous) if c.type in STORE_CONDITIONS]
        conds += store_conds
        new = {"components": components, "breaker": breaker_status, "serviceMonitor": monitoring}
        if restore_status:
            new["restore"] = restore_status
        if error is not None:
            new.pop("components")
            events.append(("Warning", reason or "ReconcileFailed", str(error)))
        status = write_status(ctx, body, previous, new, conds, events)
        if error is not None:
            raise error
        return status


def breaker_only(old_spec: Any, new_spec: Any) -> bool:
    """Whether two specs differ in ``circuitBreaker`` only (no child renders from it)."""
    if not isinstance(old_spec, dict) or not isinstance(new_spec, dict):
        return False
    rest = [{k: v for k, v in s.items() if k != "circuitBreaker"} for s in (old_spec, new_spec)]
    return rest[0] == rest[1]


def poll_breaker(ctx: Context, body: dict[str, Any], *, applied: bool = False) -> dict | None:
    """The fast path: refresh what the bot's Redis says (breaker, market data) and send or
    resend a breaker control the spec asks for; writes status only when something changed.

    ``applied``: the children already match this generation (its spec differs from the
    last reconciled one in ``circuitBreaker`` only, which no child is rendered from), so
    ``observedGeneration`` advances without the full reconcile — a breaker flip does not
    wait behind a pass over every child.
    """
    ns, name = _key(body)
    with ctx.lock((ns, name)):
        body = freshest(ctx, body)
        previous = previous_status(ctx, body)
        try:
            spec = parse_spec(body.get("spec"))
        except ValidationError:
            return None  # the full reconcile reports it
        password = ctx.passwords.get((ns, name), {}).get("REDIS_PASSWORD")
        if password is None:
            secret = ctx.kube.get("v1", "Secret", ns, secret_name(Bot(name, ns, "", spec)))
            password = decode_secret(secret).get("REDIS_PASSWORD") if secret else None
        breaker_status, market_cond = sync_breaker(
            ctx, body, spec, previous.get("breaker") or {}, password
        )
        observed = {conditions.BREAKER: breaker.condition(breaker_status)}
        observed[conditions.MARKET_DATA] = market_cond
        kept = [c for c in _conds_from(previous) if c.type not in observed]
        behind = applied and previous.get("observedGeneration") != body["metadata"].get(
            "generation"
        )
        if (
            not behind
            and _clean(breaker_status) == _clean(previous.get("breaker"))
            and all(c in _conds_from(previous) for c in observed.values())
        ):
            return None  # nothing new: no write
        conds = kept or conditions.component_conditions({}, None)
        conds += list(observed.values())
        new = {"breaker": breaker_status}
        return write_status(ctx, body, previous, new, conds, [], full=applied)
