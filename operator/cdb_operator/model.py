"""The TradingBot custom resource as pydantic models: the one source of truth for its schema.

The operator parses every TradingBot's ``spec`` with :class:`TradingBotSpec` (so it sees
the same defaults the API server applies), and :mod:`cdb_operator.crd` turns the same
models into the CRD's structural openAPIV3Schema, with camelCase names, defaults,
bounds, enums and the CEL rules declared here next to the fields they guard.

Every rule guards each key it reads with ``has()``: at CRD creation the API server
evaluates the rules against each ``default`` exactly as written (``default: {}`` has no
keys; nested defaults are not applied there), and an unguarded read is "no such key",
which rejects the whole CRD (tests/test_crd_creation.py emulates that).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from cdb_operator.exchanges import EXCHANGE_IDS

GROUP = "claire-de-binare.dev"
VERSION = "v1alpha1"
KIND = "TradingBot"
PLURAL = "tradingbots"
SINGULAR = "tradingbot"
SHORT_NAMES = ["tb"]
API_VERSION = f"{GROUP}/{VERSION}"

#: Every service the image runs as ``cdb run NAME``, with its HTTP port.
SERVICE_PORTS: dict[str, int] = {
    "feed": 8000,
    "signal": 8001,
    "risk": 8002,
    "execution": 8003,
    "persistence": 8004,
    "notifier": 8005,
    "dashboard": 8006,
}
SERVICES = tuple(SERVICE_PORTS)
#: The ML advisor (``cdb run advisor``): optional (``spec.advisor.enabled``), shadow mode only.
ADVISOR = "advisor"
ADVISOR_PORT = 8007
#: Services that write PostgreSQL (they get its password and run migrations first).
POSTGRES_USERS = ("risk", "execution", "persistence", "notifier")
#: Services that only read PostgreSQL (they get its password, never migrate).
POSTGRES_READERS = ("dashboard",)
#: Services that talk to the outside world on 443 (exchange API, web push).
INTERNET_USERS = ("feed", "execution", "notifier")
#: Services that may run more than one replica: consumers whose work is idempotent and
#: carries no per-process state. Feed and signal keep windows in memory; risk and execution
#: must never run twice (one breaker, one order book).
SCALABLE = ("persistence", "notifier")

SYMBOL_PATTERN = r"^[A-Z0-9]+_[A-Z0-9]+$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
STORAGE_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
#: A CronJob schedule: five fields or a macro such as @daily (the API server checks the rest).
SCHEDULE_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"

Quantity = Annotated[
    int | Annotated[str, Field(pattern=QUANTITY_PATTERN)],
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
Storage = Annotated[str, Field(pattern=STORAGE_PATTERN, max_length=32)]
ObjectName = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=253)]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, max_length=32)]
Percent = Annotated[float, Field(gt=0, le=100)]
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def immutable(message: str) -> dict[str, Any]:
    """A CEL transition rule: the field may be set at creation but never changed after."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


class Spec(BaseModel):
    """Base of every spec model: camelCase on the wire, frozen, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class Exchange(Spec):
    """Which exchange to trade on, in which mode, with which credentials."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.mode) || self.mode != 'live' || has(self.credentialsSecret)",
                    "message": "exchange.credentialsSecret is required when exchange.mode is live",
                    "fieldPath": ".credentialsSecret",
                    "reason": "FieldValueRequired",
                }
            ]
        }
    )

    name: Literal[EXCHANGE_IDS] = Field(  # type: ignore[valid-type]
        "mexc", description="Exchange id (EXCHANGE_ID): one of ccxt's (cdb_operator.exchanges)"
    )
    mode: Literal["paper", "live"] = Field(
        "paper", description="paper: simulated fills on real prices; live: real orders"
    )
    credentials_secret: ObjectName | None = Field(
        None,
        description="Secret in the bot's namespace with keys MEXC_API_KEY and MEXC_API_SECRET; "
        "required in live mode, given to the execution service only",
    )


class Strategy(Spec):
    """The momentum strategy's parameters."""

    threshold_pct: Annotated[float, Field(gt=0, le=100)] = Field(
        3.0, description="Move over the lookback window that makes a signal, in percent"
    )
    min_volume: Annotated[float, Field(ge=0)] = Field(
        100000.0, description="Minimum quote-currency volume over the lookback window"
    )
    lookback_minutes: Annotated[int, Field(ge=1, le=1440)] = Field(
        15, description="Lookback window in minutes"
    )


class Risk(Spec):
    """Limits the risk manager enforces before any order reaches execution."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxPositionPct) || !has(self.maxExposurePct) "
                    "|| self.maxPositionPct <= self.maxExposurePct",
                    "message": "risk.maxPositionPct must not exceed risk.maxExposurePct",
                    "fieldPath": ".maxPositionPct",
                }
            ]
        }
    )

    max_position_pct: Percent = Field(10.0, description="Largest single position, % of equity")
    max_exposure_pct: Percent = Field(50.0, description="Total open exposure, % of equity")
    stop_loss_pct: Annotated[float, Field(gt=0, lt=100)] = Field(
        2.0,
        description="Stop loss below entry, in percent; fixed per position when it opens: a "
        "change applies to new positions, not open ones (re-stop them with "
        "`python -m cdb.risk.restop`)",
    )
    max_daily_drawdown_pct: Percent = Field(
        5.0, description="Daily loss that trips the breaker until the next UTC day, in percent"
    )
    max_open_positions: Annotated[int, Field(ge=1, le=100)] = Field(
        5, description="Most positions open at once"
    )


class CircuitBreaker(Spec):
    """The manual circuit breaker: engaged halts all new orders until released."""

    engaged: bool = Field(False, description="true halts trading; false releases a manual halt")
    reason: Annotated[str, Field(max_length=200)] = Field(
        "", description="Why, shown in status and sent to the risk manager"
    )


class Image(Spec):
    """The container image every service, the migrations and the backup run from."""

    repository: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        "ghcr.io/claire-de-binare/cdb", description="Image repository"
    )
    tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")] = Field(
        "0.1.0", description="Image tag"
    )
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy"
    )


class Resources(Spec):
    """Container resource requests and limits (Kubernetes quantities)."""

    requests: dict[str, Quantity] = Field(
        default_factory=lambda: {"cpu": "50m", "memory": "128Mi"},
        description="Resource requests",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=lambda: {"memory": "256Mi"}, description="Resource limits"
    )


class Service(Spec):
    """A single-replica service: only its resources can be set."""

    resources: Resources = Field(default_factory=Resources, description="Requests and limits")


class ScalableService(Service):
    """A service safe to run as several replicas (idempotent consumers in one group)."""

    replicas: Annotated[int, Field(ge=1, le=5)] = Field(1, description="Number of replicas")


class NotifierService(ScalableService):
    """The notifier: scalable, and optionally given its web-push keys from a Secret."""

    env_secret: ObjectName | None = Field(
        None,
        description="Secret whose keys become the notifier's environment (WEBPUSH_VAPID_PUBLIC_KEY, "
        "WEBPUSH_VAPID_PRIVATE_KEY, WEBPUSH_CONTACT, NOTIFIER_API_TOKEN); given to the "
        "notifier only",
    )


class DashboardIngress(Spec):
    """An optional Ingress in front of the dashboard (TLS strongly advised: it carries the token)."""

    enabled: bool = Field(False, description="Make an Ingress for the dashboard")
    host: Annotated[str, Field(pattern=NAME_PATTERN, max_length=253)] | None = Field(
        None, description="Host name the Ingress answers (unset: every host)"
    )
    class_name: Annotated[str, Field(max_length=253)] | None = Field(
        None, description="IngressClass (unset: the cluster's default)"
    )
    tls_secret: ObjectName | None = Field(
        None, description="Secret (kubernetes.io/tls) with the certificate for host"
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, description="Annotations for the ingress controller"
    )
    controller_namespace: Annotated[str, Field(max_length=63)] = Field(
        "ingress-nginx",
        description="Namespace of the ingress controller, admitted to the dashboard's port "
        "by the NetworkPolicy",
    )


class DashboardService(Service):
    """The dashboard: read-only unless its Secret holds DASHBOARD_TOKEN."""

    env_secret: ObjectName | None = Field(
        None,
        description="Secret whose keys become the dashboard's environment (DASHBOARD_TOKEN: "
        "allows engaging/releasing the breaker and push subscriptions); given to the "
        "dashboard only",
    )
    ingress: DashboardIngress = Field(
        default_factory=DashboardIngress, description="Optional Ingress"
    )


class Services(Spec):
    """Per-service settings; risk and execution always run exactly one replica."""

    feed: Service = Field(default_factory=Service, description="Market data feed")
    signal: Service = Field(default_factory=Service, description="Signal engine")
    risk: Service = Field(default_factory=Service, description="Risk manager (one replica)")
    execution: Service = Field(default_factory=Service, description="Execution (one replica)")
    persistence: ScalableService = Field(
        default_factory=ScalableService, description="PostgreSQL writer"
    )
    notifier: NotifierService = Field(
        default_factory=NotifierService, description="Alert notifier (web push)"
    )
    dashboard: DashboardService = Field(
        default_factory=DashboardService,
        description="Dashboard: status, positions, P&L, explanations, the breaker's buttons",
    )


class ConfigMapModel(Spec):
    """A model artifact held in a ConfigMap key (a JSON artifact is a few kB)."""

    name: ObjectName = Field(description="ConfigMap in the bot's namespace")
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        "model.json", description="Key holding the artifact"
    )


class VolumeModel(Spec):
    """A model artifact on a PersistentVolumeClaim, mounted read-only."""

    claim_name: ObjectName = Field(description="PVC in the bot's namespace")
    path: Annotated[str, Field(pattern=r"^[^/].*$", max_length=253)] = Field(
        "model.json", description="Path of the artifact inside the volume"
    )


class AdvisorModel(Spec):
    """Where the advisor's model artifact comes from: exactly one of the three."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.configMap) ? 1 : 0) + (has(self.persistentVolumeClaim) ? "
                    "1 : 0) + (has(self.path) ? 1 : 0) == 1",
                    "message": "advisor.model: set exactly one of configMap, persistentVolumeClaim and path",
                }
            ]
        }
    )

    config_map: ConfigMapModel | None = Field(None, description="From a ConfigMap key")
    persistent_volume_claim: VolumeModel | None = Field(None, description="From a PVC")
    path: Annotated[str, Field(pattern=r"^/.*$", max_length=1024)] | None = Field(
        None, description="An absolute path inside the image"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AdvisorModel:
        given = [self.config_map, self.persistent_volume_claim, self.path]
        if sum(v is not None for v in given) != 1:
            raise ValueError(
                "advisor.model: set exactly one of configMap, persistentVolumeClaim and path"
            )
        return self


class Advisor(Spec):
    """The ML signal advisor, in shadow mode: it publishes to ml_signals, which nothing that
    trades reads; it gets a route to Redis only."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.enabled) || !self.enabled || has(self.model)",
                    "message": "advisor.model is required when advisor.enabled is true",
                    "fieldPath": ".model",
                    "reason": "FieldValueRequired",
                }
            ]
        }
    )

    enabled: bool = Field(False, description="Run the advisor (cdb run advisor)")
    model: AdvisorModel | None = Field(None, description="The model artifact (cdb ml train)")
    threshold: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0, description="Probability for an ml_signal (ADVISOR_THRESHOLD; 0 = the model's own)"
    )
    cooldown_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(
        300, description="Per symbol, seconds between ml_signals (ADVISOR_COOLDOWN_S)"
    )
    resources: Resources = Field(default_factory=Resources, description="Requests and limits")

    @model_validator(mode="after")
    def _model_when_enabled(self) -> Advisor:
        if self.enabled and self.model is None:
            raise ValueError("advisor.model is required when advisor.enabled is true")
        return self


def _db_resources() -> Resources:
    return Resources(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"})


class SecretKeyRef(Spec):
    """One key of a Secret in the bot's namespace."""

    name: ObjectName = Field(description="Secret name")
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key within the Secret"
    )


HostName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]


class ExternalRedis(Spec):
    """A Redis the bot does not run (a managed one): where it is and how to log in.

    The bus needs it durable: ``appendonly yes`` with ``appendfsync everysec`` (or
    ``always``), and ``maxmemory-policy noeviction`` (an evicted stream entry is a lost
    event). The operator checks these with ``CONFIG GET`` where the server allows it.
    Give each bot a Redis (or database) of its own: the stream and key names are fixed.
    """

    host: HostName = Field(description="Host name or address")
    port: Port = Field(6379, description="Port")
    tls: bool = Field(False, description="Connect with TLS (rediss)")
    password_secret: SecretKeyRef | None = Field(
        None, description="Secret key holding the password (AUTH); unset: no password"
    )


class Redis(Spec):
    """The event bus: the bot's own Redis StatefulSet (AOF on a PVC), or an external Redis."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.mode) || self.mode != 'external' || has(self.external)",
                    "message": "redis.external is required when redis.mode is external",
                    "fieldPath": ".external",
                    "reason": "FieldValueRequired",
                }
            ]
        }
    )

    mode: Literal["embedded", "external"] = Field(
        "embedded",
        description="embedded: a one-replica StatefulSet per bot; external: redis.external "
        "(fixed after creation)",
        json_schema_extra=immutable("redis.mode cannot be changed after creation"),
    )
    external: ExternalRedis | None = Field(None, description="The external Redis (mode external)")
    image: Annotated[str, Field(min_length=1)] = Field(
        "redis:7.2-alpine", description="Redis image, embedded mode (runs as uid 999)"
    )
    storage: Storage = Field(
        "1Gi",
        description="PVC size (fixed after creation)",
        json_schema_extra=immutable("redis.storage cannot be changed after creation"),
    )
    storage_class: ObjectName | None = Field(
        None,
        description="StorageClass (default: the cluster's); fixed after creation",
        json_schema_extra=immutable("redis.storageClass cannot be changed after creation"),
    )
    resources: Resources = Field(default_factory=_db_resources, description="Requests/limits")

    @model_validator(mode="after")
    def _external_given(self):
        if self.mode == "external" and self.external is None:
            raise ValueError("external is required when mode is external")
        return self


class ExternalPostgres(Spec):
    """A PostgreSQL the bot does not run (a managed database): where and how to log in.

    The user must own the database (the services run the migrations).
    """

    host: HostName = Field(description="Host name or address")
    port: Port = Field(5432, description="Port")
    database: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        "claire_de_binare", description="Database name"
    )
    user: Annotated[str, Field(min_length=1, max_length=63)] = Field(
        "claire", description="User (owner of the database)"
    )
    password_secret: SecretKeyRef = Field(description="Secret key holding the user's password")
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "require", description="libpq sslmode"
    )


class CloudNativePG(Spec):
    """The CloudNativePG ``Cluster`` made in mode cloudnativepg."""

    instances: Annotated[int, Field(ge=1, le=9)] = Field(
        3, description="PostgreSQL instances (one primary, the rest streaming standbys)"
    )
    image_name: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        None, description="PostgreSQL image (unset: the CloudNativePG operator's default)"
    )


class Postgres(Spec):
    """The database: the bot's own StatefulSet, a CloudNativePG Cluster, or an external one."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.mode) || self.mode != 'external' || has(self.external)",
                    "message": "postgres.external is required when postgres.mode is external",
                    "fieldPath": ".external",
                    "reason": "FieldValueRequired",
                }
            ]
        }
    )

    mode: Literal["embedded", "cloudnativepg", "external"] = Field(
        "embedded",
        description="embedded: a one-replica StatefulSet per bot; cloudnativepg: a "
        "CloudNativePG Cluster (needs its operator); external: postgres.external "
        "(fixed after creation)",
        json_schema_extra=immutable("postgres.mode cannot be changed after creation"),
    )
    cloudnativepg: CloudNativePG = Field(
        default_factory=CloudNativePG, description="The Cluster (mode cloudnativepg)"
    )
    external: ExternalPostgres | None = Field(
        None, description="The external database (mode external)"
    )
    image: Annotated[str, Field(min_length=1)] = Field(
        "postgres:15-alpine",
        description="PostgreSQL image, embedded mode (runs as uid 70; cloudnativepg: cloudnativepg.imageName)",
    )
    storage: Storage = Field(
        "5Gi",
        description="PVC size, per instance in cloudnativepg (fixed after creation)",
        json_schema_extra=immutable("postgres.storage cannot be changed after creation"),
    )
    storage_class: ObjectName | None = Field(
        None,
        description="StorageClass (default: the cluster's); fixed after creation",
        json_schema_extra=immutable("postgres.storageClass cannot be changed after creation"),
    )
    resources: Resources = Field(default_factory=_db_resources, description="Requests/limits")

    @model_validator(mode="after")
    def _external_given(self):
        if self.mode == "external" and self.external is None:
            raise ValueError("external is required when mode is external")
        return self


class Backup(Spec):
    """The daily database dump to a PVC of its own."""

    enabled: bool = Field(True, description="Run the backup CronJob")
    schedule: Annotated[str, Field(pattern=SCHEDULE_PATTERN, max_length=100)] = Field(
        "0 3 * * *", description="Cron schedule (UTC)"
    )
    retention: Annotated[int, Field(ge=1, le=365)] = Field(
        7, description="Number of dumps kept; older ones are deleted"
    )
    storage: Storage = Field(
        "5Gi",
        description="Size of the backup PVC",
        json_schema_extra=immutable("backup.storage cannot be changed after creation"),
    )
    storage_class: ObjectName | None = Field(
        None,
        description="StorageClass of the backup PVC",
        json_schema_extra=immutable("backup.storageClass cannot be changed after creation"),
    )


class Monitoring(Spec):
    """Prometheus scraping through the prometheus-operator's ServiceMonitor."""

    service_monitor: Literal["auto", "enabled", "disabled"] = Field(
        "auto",
        description="auto: make a ServiceMonitor when monitoring.coreos.com/v1 exists; "
        "enabled: the same, and report Degraded when the API is missing",
    )
    interval: Annotated[str, Field(pattern=r"^[0-9]+(ms|s|m|h)$")] = Field(
        "30s", description="Scrape interval"
    )
    service_monitor_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"},
        description="Extra labels on the ServiceMonitor, for the Prometheus that selects it. "
        "The default matches kube-prometheus-stack installed under the release name "
        "kube-prometheus-stack; set {release: NAME} for another release name",
    )


class NetworkPolicy(Spec):
    """Default-deny NetworkPolicies with only the traffic each pod needs."""

    enabled: bool = Field(True, description="Make the NetworkPolicies")
    monitoring_namespace: Annotated[str, Field(max_length=63)] = Field(
        "monitoring", description="Namespace whose pods may scrape the metrics ports"
    )
    operator_namespace: Annotated[str, Field(max_length=63)] | None = Field(
        None,
        description="Namespace of the operator, admitted to Redis for the breaker "
        "(default: the namespace the operator runs in)",
    )
    egress_cidrs: list[Annotated[str, Field(max_length=43)]] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        min_length=1,
        description="Where feed, execution and notifier may connect on port 443",
    )


class Restore(Spec):
    """Restore the bot's PostgreSQL from a backup on its backup PVC: once per ``requestId``.

    While a restore runs the services are scaled to zero and the backup CronJob is
    suspended; the restore Job empties the database, runs ``cdb restore`` (file checksums
    before, every table's row count and checksum after) and leaves the risk manager's
    breaker engaged, so the bot comes back halted. A ``requestId`` that succeeded is never
    run again; set a new one to restore again.
    """

    request_id: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")] = Field(
        description="Any new value asks for one restore (e.g. a date); the same value never "
        "runs twice"
    )
    backup: Annotated[str, Field(pattern=r"^(latest|backup-[0-9]{8}T[0-9]{6}(\.[0-9]+)?Z)$")] = (
        Field(
            "latest",
            description="A backup directory on the backup PVC (backup-…Z), or latest: the "
            "newest complete one",
        )
    )


class Toleration(Spec):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class PodDisruptionBudgets(Spec):
    """PodDisruptionBudgets: voluntary evictions (node drains) never take all of a part."""

    enabled: bool = Field(
        True,
        description="The embedded Redis and PostgreSQL (one pod each: a drain waits until a "
        "person moves the bot) and every service with more than one replica (at most one "
        "evicted at a time); CloudNativePG makes its own",
    )


class TopologySpread(Spec):
    """Spread each component's pods over nodes or zones (multi-node clusters)."""

    topology_key: Annotated[str, Field(max_length=316)] | None = Field(
        None,
        description="Node label to spread over (kubernetes.io/hostname, "
        "topology.kubernetes.io/zone); unset: no constraint",
    )
    when_unsatisfiable: Literal["ScheduleAnyway", "DoNotSchedule"] = Field(
        "ScheduleAnyway", description="Whether an unbalanced spread blocks scheduling"
    )


class TradingBotSpec(Spec):
    """A complete trading system: services, Redis, PostgreSQL, backups, policies, monitoring."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.symbols) || size(self.symbols) > 0 "
                    "|| (has(self.topMovers) && self.topMovers > 0)",
                    "message": "set symbols or topMovers (symbols is empty and topMovers is 0)",
                    "fieldPath": ".symbols",
                }
            ]
        }
    )

    exchange: Exchange = Field(default_factory=Exchange, description="Exchange and mode")
    symbols: list[Symbol] = Field(
        default_factory=lambda: ["BTC_USDT", "ETH_USDT"],
        max_length=100,
        description="Symbols to trade (SYMBOLS), unless topMovers is set",
    )
    top_movers: Annotated[int, Field(ge=0, le=100)] = Field(
        0, description="Trade the N biggest movers instead of symbols (0 = use symbols)"
    )
    feed_source: Literal["live", "synthetic", "replay"] = Field(
        "live", description="Where market data comes from (FEED_SOURCE)"
    )
    quote_asset: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")] = Field(
        "USDT", description="Quote currency (QUOTE_ASSET)"
    )
    paper_start_balance: Annotated[float, Field(gt=0)] = Field(
        10000.0, description="Starting paper balance in the quote asset"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every service"
    )
    strategy: Strategy = Field(default_factory=Strategy, description="Strategy parameters")
    risk: Risk = Field(default_factory=Risk, description="Risk limits")
    circuit_breaker: CircuitBreaker = Field(
        default_factory=CircuitBreaker, description="Manual halt"
    )
    image: Image = Field(default_factory=Image, description="The project's image")
    services: Services = Field(default_factory=Services, description="Per-service settings")
    advisor: Advisor = Field(
        default_factory=Advisor, description="ML signal advisor, shadow mode only (off by default)"
    )
    redis: Redis = Field(default_factory=Redis, description="The event bus")
    postgres: Postgres = Field(default_factory=Postgres, description="The database")
    backup: Backup = Field(default_factory=Backup, description="Daily database dumps")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Prometheus")
    network_policy: NetworkPolicy = Field(
        default_factory=NetworkPolicy, description="NetworkPolicies"
    )
    keep_data_on_delete: bool = Field(
        True,
        description="Keep the Redis, PostgreSQL and backup PVCs when the TradingBot is deleted",
    )
    restore: Restore | None = Field(
        None, description="Restore PostgreSQL from a backup (see docs/runbook.md)"
    )
    node_selector: dict[str, str] = Field(
        default_factory=lambda: {"kubernetes.io/arch": "amd64"},
        description="Node selector of every pod (default: amd64 nodes only)",
    )
    affinity: FreeForm | None = Field(None, description="Pod affinity (core/v1 Affinity)")
    tolerations: list[Toleration] = Field(default_factory=list, description="Pod tolerations")
    topology_spread: TopologySpread = Field(
        default_factory=TopologySpread, description="Topology spread of each component's pods"
    )
    priority_class_name: ObjectName | None = Field(
        None, description="PriorityClass of every pod (unset: the cluster's default)"
    )
    pod_disruption_budgets: PodDisruptionBudgets = Field(
        default_factory=PodDisruptionBudgets, description="PodDisruptionBudgets"
    )


def parse_spec(spec: dict[str, Any] | None) -> TradingBotSpec:
    """A TradingBot's spec as the model (raises ``pydantic.ValidationError`` when invalid)."""
    return TradingBotSpec.model_validate(spec or {})


# -- status -----------------------------------------------------------------------------------


class Condition(Spec):
    """A standard Kubernetes condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="CamelCase reason")
    message: str = ""
    last_transition_time: str = Field("", description="RFC 3339 time of the last change")
    observed_generation: int | None = None


class ComponentStatus(Spec):
    """Readiness of one workload."""

    kind: str
    ready: bool
    ready_replicas: int = 0
    replicas: int = 0


class BreakerStatus(Spec):
    """What was asked of the breaker and what the risk manager confirmed."""

    state: str = Field(
        "Unknown", description="Engaged, Released, Pending or Unknown (printer column)"
    )
    requested: bool = Field(False, description="spec.circuitBreaker.engaged as last sent")
    requested_reason: str = ""
    control_id: str | None = Field(None, description="The control event awaiting confirmation")
    sent_at: int | None = Field(None, description="Unix seconds of the last send")
    delivered: bool = Field(False, description="The control entry is in the bot's Redis")
    confirmed: bool = Field(False, description="The risk manager applied control_id")
    engaged: bool | None = Field(None, description="The risk manager's real state")
    engaged_by: list[str] = Field(
        default_factory=list, description="manual, risk-manager (drawdown), kill-switch"
    )
    reason: str = ""
    updated_at: int | None = Field(None, description="When the risk manager last wrote it")
    refused_orders: int = Field(
        0, description="Orders execution refused because the kill switch or breaker was engaged"
    )
    last_refused: str = Field("", description="The latest: client id, side, symbol: reason")
    error: str = Field(
        "", description="Why the last observation of the bot's Redis failed ('' once it answers)"
    )
    observed_at: int | None = Field(
        None, description="Unix seconds of the observation that last changed this status"
    )


class RestoreStatus(Spec):
    """The last restore asked for with ``spec.restore``."""

    request_id: str = ""
    backup: str = ""
    job: str = Field("", description="The restore Job")
    phase: str = Field("", description="Running, Succeeded or Failed")
    message: str = ""
    started_at: int | None = Field(None, description="Unix seconds the Job was created")
    completed_at: int | None = Field(None, description="Unix seconds it finished")


class TradingBotStatus(Spec):
    """Written by the operator only, always through explicit status patches."""

    phase: str = Field(
        "Pending", description="Pending, Progressing, Running, Halted, Degraded, Failed"
    )
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    components: dict[str, ComponentStatus] = Field(default_factory=dict)
    breaker: BreakerStatus = Field(default_factory=BreakerStatus)
    service_monitor: bool = Field(False, description="A ServiceMonitor was made")
    restore: RestoreStatus | None = Field(None, description="The last restore")
