"""What every service's ``/metrics`` carries besides its own counters, and naming helpers.

- ``process_*`` and ``python_*`` (prometheus_client's process, platform and GC collectors)
  and ``cdb_build_info{version, python_version}`` = 1, registered by the runtime.
- No series carries a ``service`` label: the scraper's target labels say which service
  (and which bot) a series comes from — the ServiceMonitor the operator makes sets
  ``service``, ``bot`` and ``namespace`` (Prometheus renames a label the target also
  sets to ``exported_…``, which is why the services no longer add their own).
- ``zero``: a labelled counter's known children created at 0 at start-up, so
  ``rate``/``increase`` see the first event and a dashboard panel has a series before it.
- Metrics renamed to these conventions are also exported under their old names for one
  release (CHANGELOG.md lists them), by the collector that exports the new name.

Names follow https://prometheus.io/docs/practices/naming/: the ``cdb_`` prefix, base units
(``_seconds``, ``_ratio`` 0–1 instead of a percentage), ``_total`` on counters, money in the
quote asset with a ``currency`` label.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from cdb import __version__
from cdb.bus import ALERTS, HEALTH, MARKET_DATA, ORDER_RESULT, ORDERS, SIGNALS

#: Streams each service publishes to: their ``cdb_events_produced_total`` series exist from the
#: start, at 0 (the streams a service reads get theirs from ``Service.streams``). Source: the
#: services' ``publish`` calls; every service also publishes ``health``.
PRODUCES: dict[str, tuple[str, ...]] = {
    "feed": (MARKET_DATA,),
    "signal": (SIGNALS,),
    "risk": (ORDERS, ALERTS),
    "execution": (ORDER_RESULT, ALERTS),
}


def produced_streams(service: str) -> tuple[str, ...]:
    """The streams ``service`` publishes to, ``health`` included."""
    return (*PRODUCES.get(service, ()), HEALTH)


def register_standard(registry: CollectorRegistry) -> None:
    """Add ``process_*``, ``python_*`` and ``cdb_build_info`` to a service's own registry."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(_BuildInfo())


class _BuildInfo:
    def collect(self):
        info = GaugeMetricFamily(
            "cdb_build_info",
            "Always 1; the running version of Claire de Binare and of Python",
            labels=["version", "python_version"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info


def zero(counter: Counter, label_sets: Iterable[Sequence[str]]) -> None:
    """Create each listed child of a labelled counter at 0 (no-op for one that exists)."""
    for values in label_sets:
        counter.labels(*values)


class PostgresUp:
    """``cdb_postgres_up``: 1 while the service's last PostgreSQL call succeeded.

    ``ok`` is read at scrape time from the service's own state (no extra query per scrape).
    """

    def __init__(self, ok: Callable[[], bool]) -> None:
        self.ok = ok

    def collect(self):
        yield GaugeMetricFamily(
            "cdb_postgres_up",
            "1 while the service's last PostgreSQL call succeeded",
            value=1.0 if self.ok() else 0.0,
        )
