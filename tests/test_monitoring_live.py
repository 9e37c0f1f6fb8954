"""The dashboard and the alerts against a real Prometheus scraping the real services.

Debian's ``prometheus`` binary scrapes the six services of a running pipeline (real Redis
and PostgreSQL, the synthetic market, paper trading) every second, each target carrying the
meta labels Kubernetes discovery would give it and relabelled by the operator's
ServiceMonitor relabelings (so ``namespace``, ``bot`` and ``service`` come out as in a
cluster), and evaluates the chart's alert rules. Then:

- every dashboard expression, with ``$namespace``/``$bot`` set as a user picks them, and
  both variables' queries, return data;
- every series an alert reads returns data, except kube-state-metrics' (``kube_*``: no
  Kubernetes here; the promtool unit tests cover those rules) and the operator's
  (``cdb_operator_*``: no cluster for it to reconcile);
- every rule evaluates without error on the real series, the alerts about a broken bot stay
  silent on a healthy one, and stopping a service makes ``CdbServiceDown`` pending.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import wait_until
from pipeline import Pipeline
from prom_tools import binary
from test_alerts import RULES_FILE
from test_chart_dashboard import DASHBOARD, PANELS

from cdb.localservers import PostgresServer, RedisServer, free_port, wait_for_port
from cdb_operator.render import alerts, monitoring

NS, BOT = "cdb-test", "paper"
#: Wide limits so the random market trades (positions, P&L) without tripping the breaker.
ENV = {
    "MAX_DAILY_DRAWDOWN_PCT": "50",
    "RISK_ABNORMAL_MOVE_PCT": "90",
    "MAX_OPEN_POSITIONS": "20",
    "MAX_EXPOSURE_PCT": "95",
    "STOP_LOSS_PCT": "50",
    "RISK_SIGNAL_MAX_AGE_S": "600",
    "RISK_MARKET_DATA_MAX_AGE_S": "600",
}
#: Alerts that must stay silent while every service is up and healthy.
SILENT_WHEN_HEALTHY = (
    "CdbServiceDown",
    "CdbServiceAbsent",
    "CdbRedisUnreachable",
    "CdbPostgresUnreachable",
    "CdbExecutionFailingClosed",
    "CdbNoMarketData",
    "CdbMarketDataStale",
    "CdbKillSwitchEngaged",
    "CdbBreakerEngaged",
)
#: Series no test here can produce, and why.
ELSEWHERE = {
    "kube_": "kube-state-metrics (Kubernetes)",
    "cdb_operator_": "the operator (a cluster)",
}


def discovered(service: str) -> dict[str, str]:
    """The meta labels Kubernetes service discovery gives a target of the bot's Service."""
    meta = "__meta_kubernetes_service_label_app_kubernetes_io_"
    return {
        "__meta_kubernetes_namespace": NS,
        "__meta_kubernetes_service_name": f"{BOT}-{service}",
        meta + "instance": BOT,
        meta + "component": service,
    }


#: What prometheus-operator makes of the operator's ServiceMonitor: its own relabelings
#: (namespace and service from discovery), then the ServiceMonitor's (render/monitoring.py)
#: translated field by field — the very ones the operator renders, not a copy.
SERVICE_MONITOR_RELABELING = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
    *(
        {
            "source_labels": r["sourceLabels"],
            "target_label": r["targetLabel"],
            "action": r["action"],
        }
        for r in monitoring.RELABELINGS
    ),
]


class Prometheus:
    """``prometheus`` on a free loopback port, with its own config and storage."""

    def __init__(self, root: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        shutil.copy(RULES_FILE, root / "rules.yaml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(root / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": f"{BOT}-{name}",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": discovered(name)}
                    ],
                    "relabel_configs": SERVICE_MONITOR_RELABELING,
                }
                for name, port in targets.items()
            ],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (root / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={root / 'prometheus.yml'}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=30)

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def targets(self) -> str:
        """Each target's health, last error and scrape time, for a failure's message."""
        return "; ".join(
            f"{t['labels'].get('job')}: {t['health']} in {t['lastScrapeDuration']:.3f}s"
            + (f" ({t['lastError']})" if t["lastError"] else "")
            for t in self.api("targets")["activeTargets"]
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def up_services(prom: Prometheus) -> set[str]:
    """The services whose last scrape succeeded, by their ``service`` label."""
    return {r["metric"].get("service", "") for r in prom.query(f'up{{bot="{BOT}"}} == 1')}


@pytest.fixture(scope="module")
def live():
    root = Path(tempfile.mkdtemp(prefix="cdb-monitoring-"))
    root.chmod(0o755)  # PostgreSQL's user must reach its directory when run as root
    redis_server = RedisServer(root / "redis").start()
    pg_server = PostgresServer(root / "pg")
    pg_server.init()
    (root / "logs").mkdir()
    pipeline = Pipeline(redis_server, pg_server, root / "logs", extra_env=ENV).start()
    prom = Prometheus(root, {n: s.port for n, s in pipeline.services.items()})
    try:
        # every target up at once: the six of the alerts and the dashboard (counting them
        # raced: six of seven could be up at one poll and seven at the next)
        wait_until(
            lambda: up_services(prom) >= set(pipeline.services) >= set(alerts.SERVICES),
            timeout=60,
            message=f"Prometheus scrapes all of {sorted(pipeline.services)}",
            describe=lambda: f"{prom.targets()}; {pipeline.processes()}",
        )
        yield pipeline, prom
    finally:
        prom.stop()
        pipeline.stop()
        redis_server.stop()
        pg_server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_promtool_check_metrics_is_clean_for_every_service(live):
    pipeline, _prom = live
    for name, svc in pipeline.services.items():
        proc = subprocess.run(
            [binary("promtool"), "check", "metrics"],
            input=svc.metrics(),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0 and not proc.stdout + proc.stderr, (name, proc.stderr)


def user_view(expr: str) -> str:
    """The expression as Grafana sends it once the user picked the namespace and the bot."""
    return expr.replace("$namespace", NS).replace("$bot", BOT)


def wait_for_data(prom: Prometheus, exprs: list[str], timeout: float) -> list[str]:
    """The expressions that still return nothing after ``timeout`` seconds."""
    pending = list(dict.fromkeys(exprs))
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = [e for e in pending if not prom.query(e)]
        if pending:
            time.sleep(2)
    return pending


def test_every_dashboard_expression_returns_data(live):
    _pipeline, prom = live
    # The optional ML advisor's row: this pipeline runs no advisor; its series are checked
    # where it runs (tests/test_advisor_service.py reads the same metric names).
    exprs = [
        user_view(t["expr"])
        for p in PANELS
        for t in p["targets"]
        if "cdb_advisor_" not in t["expr"]
    ]
    assert len(exprs) >= 30
    # rate()/increase() over [5m] need two samples; positions and P&L need a trade
    empty = wait_for_data(prom, exprs, timeout=150)
    assert not empty, "no data for:\n" + "\n".join(empty)
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] != "query":
            continue
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"]).groups()
        values = prom.api(f"label/{label}/values", **{"match[]": user_view(metric)})
        assert values == [NS if label == "namespace" else BOT], var["name"]


_SELECTOR = re.compile(r"\b((?:cdb|kube)_[a-z0-9_]+|up)\b(\{[^}]*\})?")


def alert_selectors(expr: str) -> list[str]:
    """Every vector selector in an alert expression (names with their matchers)."""
    return [name + (matchers or "") for name, matchers in _SELECTOR.findall(expr)]


def test_alert_selectors_are_parsed():
    sel = alert_selectors(alerts.ALERTS[0].expr)
    assert sel == ['cdb_risk_breaker_reason{reason="kill_switch"}']


def test_every_series_an_alert_reads_exists(live):
    _pipeline, prom = live
    wanted, elsewhere = [], []
    for alert in alerts.ALERTS:
        for sel in alert_selectors(alert.expr):
            (elsewhere if sel.startswith(tuple(ELSEWHERE)) else wanted).append(sel)
    assert wanted and elsewhere
    scoped = [
        f'count({sel[:-1] + ", " if sel.endswith("}") else sel + "{"}namespace="{NS}", bot="{BOT}"}})'
        for sel in wanted
    ]
    empty = wait_for_data(prom, scoped, timeout=150)
    assert not empty, "no data for:\n" + "\n".join(empty)
    # what is left is read from elsewhere, for a stated reason
    assert all(s.startswith(tuple(ELSEWHERE)) for s in elsewhere)


def test_rules_evaluate_and_stay_silent_on_a_healthy_bot(live):
    pipeline, prom = live

    def rules() -> list[dict]:
        groups = prom.api("rules")["groups"]
        return [r for g in groups for r in g["rules"]]

    wait_until(
        lambda: (
            all(r.get("lastEvaluation", "").startswith("2") for r in rules())
            and len(rules()) == len(alerts.ALERTS)
        ),
        timeout=30,
        message="every rule evaluated",
    )
    time.sleep(3)
    for rule in rules():
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
    active = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]}
    assert not active & set(SILENT_WHEN_HEALTHY), active

    # a service goes away: its down alert becomes pending (it fires after its `for`)
    pipeline.services["notifier"].stop()
    wait_until(
        lambda: any(
            a["labels"]["alertname"] == "CdbServiceDown" and a["labels"]["service"] == "notifier"
            for a in prom.api("alerts")["alerts"]
        ),
        timeout=30,
        message="CdbServiceDown for the stopped notifier",
    )
