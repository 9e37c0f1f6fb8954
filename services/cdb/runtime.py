"""The service runtime: one loop, HTTP endpoints, metrics, logging and signals for every service.

A service is a small class (:class:`cdb.service.Service`) that says which streams it reads
and how it handles an entry; this module does everything else the same way for all of
them: validated settings, JSON logs that never carry a secret (:mod:`cdb.logs`), ``/livez``,
``/readyz`` (= ``/health``), ``/status`` and ``/metrics`` on a production WSGI server
(waitress, in a thread), reconnects with capped exponential backoff and jitter,
acknowledgement after handling, periodic ``health`` events, outage alerts, and a bounded
graceful stop on SIGTERM/SIGINT.

Liveness fails only when this process is wedged (its loop stopped ticking, a thread it
needs died); readiness fails while a dependency is down. A Redis or PostgreSQL outage
therefore leaves the pod running and NotReady, and the loop resumes by itself.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import signal
import threading
import time
from typing import Any

import psycopg2
import redis
from flask import Flask, Response, jsonify
from prometheus_client import Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from waitress.server import create_server

from cdb import __version__
from cdb.bus import HEALTH, Bus, Delivery
from cdb.bus_observer import ObserverBus
from cdb.events import Health
from cdb.metrics import produced_streams, register_standard
from cdb.outages import DependencyWatch
from cdb.probes import BUS, dependency_of, liveness_problems
from cdb.service import TRANSIENT, Service
from cdb.settings import BaseServiceSettings

log = logging.getLogger(__name__)


# -- metrics ------------------------------------------------------------------------------------


class _BusCollector:
    """Exports the bus's counters at scrape time, so the hot path only adds to a dict.

    The streams the service reads have their series from the start, at 0. No ``service``
    label: the scraper's target labels name the service (``cdb.metrics``).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self):
        stats = self.runtime.bus.stats
        known = dict.fromkeys(self.runtime.service.streams, 0)
        outputs = dict.fromkeys(produced_streams(self.runtime.service.name), 0)
        for metric, counter, doc, base in (
            ("cdb_events_consumed", stats.consumed, "Valid entries read, per stream", known),
            ("cdb_events_produced", stats.produced, "Entries published, per stream", outputs),
            ("cdb_events_dead_lettered", stats.dead_lettered, "Entries sent to dead_letter", known),
        ):
            family = CounterMetricFamily(metric, doc, labels=["stream"])
            for stream, value in sorted({**base, **counter}.items()):
                family.add_metric([stream], value)
            yield family
        up = GaugeMetricFamily("cdb_redis_up", "1 while Redis answers")
        up.add_metric([], 1.0 if self.runtime.redis_ok else 0.0)
        yield up


# -- the runtime --------------------------------------------------------------------------------


class Runtime:
    """Runs one service: its loop in the calling thread, its HTTP endpoints in another."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.bus = service.bus
        #: reads without a consumer group and writes only its service's output: no
        #: heartbeats, readiness reports or outage alerts (cdb.bus_observer; the advisor)
        self.observer = isinstance(service.bus, ObserverBus)
        self.settings = service.settings
        self.stopping = threading.Event()
        self.started_at = int(time.time())
        self.state = "starting"
        self.redis_ok = False
        self.heartbeat = time.monotonic()  # the start counts as a tick (STARTUP_TIMEOUT_S)
        #: dependency → reason, from the loop's last transient failure (cleared on success)
        self.down: dict[str, str] = {}
        self._http_thread: threading.Thread | None = None
        self._watch_thread: threading.Thread | None = None
        #: one HTTP readiness check at a time: a slow dependency must not tie up every HTTP
        #: thread, or /livez would queue behind them and the kubelet would restart the pod
        self._readiness_lock = threading.Lock()
        self.last_event: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._last_health = 0.0
        self._server = None
        self.http_port: int | None = None
        # /health asks Redis on its own short-timeout connection, without retries, so it
        # answers within a second even while the main loop is stuck reconnecting.
        self._health_client = redis_client(self.settings, probe=True)
        # The dependency watch runs in its own thread on that client too: it notices an
        # outage within HEALTH_INTERVAL_S however long the main loop waits on a dead server.
        self.watch = DependencyWatch(
            Bus(
                self._health_client,
                service=service.name,
                consumer=self.bus.consumer,
                maxlen_default=self.settings.STREAM_MAXLEN,
            ),
            service.name,
            self.settings.OUTAGE_ALERT_S,
        )
        self.handler_seconds = Histogram(
            "cdb_handler_seconds",
            "Time to handle one entry",
            registry=service.registry,
            buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        service.registry.register(_BusCollector(self))
        register_standard(service.registry)

    # -- HTTP ------------------------------------------------------------------------------------

    def live(self) -> tuple[bool, list[str]]:
        """Liveness: in-process facts only, never a dependency (see :mod:`cdb.probes`)."""
        setting_up = self.state in ("starting", "connecting")
        bound = self.settings.STARTUP_TIMEOUT_S if setting_up else self.settings.LIVENESS_TIMEOUT_S
        vital = (self._http_thread, self._watch_thread)
        threads = [t for t in vital if t is not None] + self.service.threads()
        problems = liveness_problems(time.monotonic(), self.heartbeat, bound, threads)
        return not problems, problems

    def healthy(self) -> tuple[bool, list[str]]:
        """Readiness: the loop runs, Redis answers, no dependency the service needs is down."""
        problems: list[str] = []
        if self.state != "running":
            problems.append(f"state is {self.state}")
        stale_after = max(5.0, 3 * self.settings.HEALTH_INTERVAL_S)
        if time.monotonic() - self.heartbeat > stale_after:
            problems.append("main loop is not running")
        problems.extend(self.live()[1])  # a wedged process is not ready either
        try:
            self._health_client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.redis_ok = False
            problems.append(f"redis unreachable: {type(exc).__name__}")
        problems.extend(f"{dep} unreachable: {why}" for dep, why in sorted(self.down.items()))
        problems.extend(self.service.health_problems())
        return not problems, problems

    def ready(self) -> tuple[bool, list[str]]:
        """Readiness for HTTP callers: ``healthy()``, or 503 at once while one is running."""
        if not self._readiness_lock.acquire(blocking=False):
            return False, ["the previous readiness check is still running (a slow dependency)"]
        try:
            return self.healthy()
        finally:
            self._readiness_lock.release()

    def down_now(self, problems: list[str] | None = None) -> dict[str, str]:
        """Each dependency down right now → the reason (from the loop and the service)."""
        down = dict(self.down)
        if not self.redis_ok:
            down.setdefault(BUS, "not answering")
        for problem in self.service.health_problems() if problems is None else problems:
            dependency = dependency_of(problem)
            if dependency:
                down.setdefault(dependency, problem[:200])
        return down

    def _watch_dependencies(self) -> None:
        """Track outages (alerts) and report readiness; the watch thread's one step."""
        if self.observer:
            return
        ready, problems = self.healthy()
        down = self.down_now(problems)
        self.watch.observe(down)
        if BUS not in down:
            self.watch.report(ready, problems, sorted(down))

    def app(self) -> Flask:
        app = Flask(self.service.name)
        base = {"service": self.service.name, "version": __version__}

        def answer(ok: bool, problems: list[str], warn: bool = True):
            body = {"status": "ok" if ok else "unavailable", **base}
            if not ok:
                body["problems"] = problems
            # Never for /livez: a service's warnings may wait on its own state, and liveness
            # must answer from the runtime's own fields while the loop waits on a dead server.
            warnings = self.service.health_warnings() if warn else []
            if warnings:
                body["warnings"] = warnings
                if ok:
                    body["status"] = "degraded"
            return jsonify(body), 200 if ok else 503

        @app.get("/livez")
        def livez():
            return answer(*self.live(), warn=False)

        @app.get("/readyz")
        def readyz():
            return answer(*self.ready())

        @app.get("/health")
        def health():  # kept for those who scrape it: the readiness answer, as before
            return answer(*self.ready())

        @app.get("/status")
        def status():
            stats = self.bus.stats
            return jsonify(
                {
                    **base,
                    "state": self.state,
                    "started_at": self.started_at,
                    "redis": "ok" if self.redis_ok else "unreachable",
                    "consumed": stats.consumed,
                    "produced": stats.produced,
                    "dead_lettered": stats.dead_lettered,
                    "last_event": self.last_event,
                    "last_error": self.last_error,
                    **self.service.status(),
                }
            )

        @app.get("/metrics")
        def metrics():
            return Response(generate_latest(self.service.registry), mimetype="text/plain")

        self.service.routes(app)
        return app

    def _watch_forever(self) -> None:
        """Every ``HEALTH_INTERVAL_S`` until stopped; a failed step is logged, never fatal."""
        while not self.stopping.wait(self.settings.HEALTH_INTERVAL_S):
            try:
                self._watch_dependencies()
            except Exception:
                log.exception("dependency watch step failed")

    def start_watch(self) -> None:
        self._watch_thread = threading.Thread(
            target=self._watch_forever, name="dependency-watch", daemon=True
        )
        self._watch_thread.start()

    def start_http(self) -> None:
        port = self.settings.HTTP_PORT
        port = self.service.default_port if port is None else port
        self._server = create_server(
            self.app(), host=self.settings.HTTP_HOST, port=port, threads=4, ident=None
        )
        self.http_port = self._server.effective_port
        self._http_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._http_thread.start()
        log.info("http listening on %s:%s", self.settings.HTTP_HOST, self.http_port)

    # -- the loop --------------------------------------------------------------------------------

    def request_stop(self, *_: object) -> None:
        if not self.stopping.is_set():
            log.info("stop requested: finishing in-flight work")
            self.state = "stopping"
            self.stopping.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        """Run until stopped; returns the process exit code (0 after a graceful stop)."""
        self._install_signal_handlers()
        self.start_http()
        self.start_watch()
        # capped low: a retry is cheap, and recovery after an outage waits at most this long
        backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.25)
        failures = 0
        ready = False
        log.info("%s %s starting", self.service.name, __version__)
        # Everything built so far (modules, settings, the app) lives as long as the process;
        # freezing it spares the collector re-scanning it on every full collection, which was
        # ~10 % of a busy consumer's CPU (py-spy, docs/benchmarks.md).
        gc.freeze()
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            try:
                if not ready:
                    self.state = "connecting"
                    self.bus.client.ping()
                    self.redis_ok = True
                    self.service.setup()
                    if self.service.streams:
                        self.bus.subscribe(self.service.streams)
                    ready = True
                    self.state = "running"
                    log.info("%s running", self.service.name)
                self._once()
                if failures:
                    log.info("recovered after %d failed attempts", failures)
                failures = 0
                self.redis_ok = True
                self.last_error = None
                self.down.clear()
            except TRANSIENT as exc:
                failures += 1
                if isinstance(exc, redis.RedisError):
                    self.redis_ok = False
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                dependency = transient_dependency(exc)
                if dependency:
                    self.down = {dependency: self.last_error}
                self.heartbeat = time.monotonic()  # waiting on a dependency is not being stuck
                self.state = "degraded" if ready else "connecting"
                wait = backoff.compute(failures)
                log.warning("transient failure (%s); retrying in %.1fs", self.last_error, wait)
                self.bus.replay_pending()
                self.stopping.wait(wait)
                self.heartbeat = time.monotonic()
                if ready:
                    self.state = "running"
            except Exception:
                # a bug escapes and the process exits: what was handled is still acked
                with contextlib.suppress(Exception):
                    self.bus.flush_acks()
                raise
        self._shutdown()
        return 0

    def _once(self) -> None:
        service = self.service
        if not service.streams:  # e.g. execution gone to standby: its last batch is acked
            self.bus.flush_acks()
        else:
            deliveries = self.bus.read(self.settings.READ_BATCH, block_ms=1000)
            if deliveries:
                handled: list[Delivery] = []
                started = time.perf_counter()
                try:
                    service.handle_batch(deliveries, handled.append)
                finally:
                    # what was handled is acked even if the rest failed, in the next read's
                    # round trip (Bus.ack_later)
                    self.bus.ack_later(handled)
                    if handled:
                        per_entry = (time.perf_counter() - started) / len(deliveries)
                        self.handler_seconds.observe(per_entry)
                        last = handled[-1]
                        self.last_event = {
                            "stream": last.stream,
                            "entry_id": last.entry_id,
                            "type": last.event.type,
                            "timestamp": last.event.timestamp,
                        }
        sleep = service.tick()
        self.heartbeat = time.monotonic()
        self._maybe_publish_health()
        if service.finished():
            log.info("%s finished its work", service.name)
            self.request_stop()
        if sleep and not self.stopping.is_set():
            self.stopping.wait(sleep)
            self.heartbeat = time.monotonic()

    def _maybe_publish_health(self) -> None:
        if self.observer:
            return
        now = time.monotonic()
        if now - self._last_health < self.settings.HEALTH_INTERVAL_S:
            return
        self._last_health = now
        problems = self.service.health_problems()
        self.bus.publish(
            Health(
                service=self.service.name,
                status="degraded" if problems else "ok",
                details={"problems": "; ".join(problems)[:900]} if problems else {},
            ),
            HEALTH,
        )

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.settings.SHUTDOWN_TIMEOUT_S
        try:
            self.bus.flush_acks()
        except redis.RedisError:
            log.warning("could not acknowledge the last batch; it is redelivered on restart")
        try:
            self.service.close()
        except Exception:
            log.exception("error while closing %s", self.service.name)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(redis.RedisError):
            self.bus.client.close()
        log.info(
            "%s stopped (%.1fs left of the stop budget)",
            self.service.name,
            max(0.0, deadline - time.monotonic()),
        )


def transient_dependency(exc: BaseException) -> str | None:
    """The dependency a transient failure is about: ``redis``, ``postgres``, or named in it."""
    if isinstance(exc, redis.RedisError):
        return BUS
    if isinstance(exc, psycopg2.Error):
        return "postgres"
    return dependency_of(str(exc))


#: No CLIENT SETINFO at connect: the advisor's ACL user may not send it (cdb.redis_acl), and
#: Redis 7.0 does not know it. redis-py 8 says so with ``driver_info=None``; 5.x-7.x with
#: ``lib_name=None, lib_version=None`` (deprecated in 8).
NO_CLIENT_SETINFO: dict[str, None] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)


def redis_client(settings: BaseServiceSettings, probe: bool = False) -> redis.Redis:
    """A Redis client whose timeouts outlast a blocking read (1 s) and fail fast otherwise.

    ``probe=True`` gives a client for health checks: 1 s timeouts and no retries.
    """
    password = settings.REDIS_PASSWORD.get_secret_value() if settings.REDIS_PASSWORD else None
    if probe:
        timeouts = {"socket_timeout": 1, "socket_connect_timeout": 1}
        retry = Retry(NoBackoff(), 0)
    else:
        timeouts = {"socket_timeout": 5, "socket_connect_timeout": 3, "health_check_interval": 30}
        # a couple of quick retries for a blip; longer outages are the runtime's backoff loop
        retry = Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2)
    return redis.Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        username=settings.REDIS_USERNAME,
        password=password,
        db=settings.REDIS_DB,
        ssl=settings.REDIS_TLS,
        retry=retry,
        **NO_CLIENT_SETINFO,
        **timeouts,
    )
