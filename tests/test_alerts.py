"""The alert rules: generated file up to date, ``promtool check rules`` clean, and each alert
unit-tested with ``promtool test rules`` — it fires on series that should fire it (labels and
rendered annotations compared) and stays silent on series that should not.

Also: every alert has its runbook section (docs/runbook.md ``### <name>``) and a line in
docs/operator.md linking it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from k8s_tools import CHART_DIR, REPO
from prom_tools import binary

from cdb_operator.render import alerts

RULES_FILE = CHART_DIR / "files" / "alerts" / "claire-de-binare.rules.yaml"
NS, BOT = "trading", "paper"
B = {"namespace": NS, "bot": BOT}


def series(metric: str, values: str, **labels: str) -> dict:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


@dataclass
class Case:
    """Series, a time, and the alerts (their labels beyond alertname and severity) expected."""

    alert: str
    input: list[dict]
    at: str
    fires: list[dict] = field(default_factory=list)
    value: str = ""  # the rendered {{ $value ... }} in annotations
    interval: str = "1m"


STALE = [
    series("cdb_risk_market_data_timestamp_seconds", "0x10", symbol="BTC_USDT", **B),
    series("cdb_risk_limit_market_data_age_seconds", "120x10", **B),
]
FRESH = [
    series("cdb_risk_market_data_timestamp_seconds", "0+60x10", symbol="BTC_USDT", **B),
    series("cdb_risk_limit_market_data_age_seconds", "120x10", **B),
]
EVERY = [
    series("up", "1x10", service=s, instance=f"{s}:8000", job=f"{BOT}-{s}", **B)
    for s in alerts.SERVICES
]
CRON = {"namespace": NS, "cronjob": f"{BOT}-backup"}
DAY = 86_400

CASES: list[Case] = [
    # -- the breaker -----------------------------------------------------------------------------
    Case(
        "CdbKillSwitchEngaged",
        [series("cdb_risk_breaker_reason", "1x10", reason="kill_switch", service="risk", **B)],
        "5m",
        [B],
    ),
    Case(
        "CdbKillSwitchEngaged",
        [
            series("cdb_risk_breaker_reason", "0x10", reason="kill_switch", service="risk", **B),
            series("cdb_risk_breaker_reason", "1x10", reason="manual", service="risk", **B),
        ],
        "5m",
    ),
    Case(
        "CdbBreakerEngaged",
        [series("cdb_risk_breaker_reason", "1x10", reason="drawdown", service="risk", **B)],
        "5m",
        [{**B, "reason": "drawdown"}],
    ),
    Case(
        "CdbBreakerEngaged",  # released, and the kill switch has its own alert
        [
            series("cdb_risk_breaker_reason", "0x10", reason="manual", service="risk", **B),
            series("cdb_risk_breaker_reason", "1x10", reason="kill_switch", service="risk", **B),
        ],
        "5m",
    ),
    Case(
        "CdbBreakerUnconfirmed",
        [series("cdb_operator_breaker_pending", "1x10", namespace=NS, name=BOT)],
        "10m",
        [{"namespace": NS, "name": BOT}],
    ),
    Case(
        "CdbBreakerUnconfirmed",  # confirmed after 3 minutes: never for 5
        [series("cdb_operator_breaker_pending", "1 1 1 0 0 0 0 0 0 0 0", namespace=NS, name=BOT)],
        "10m",
    ),
    # -- execution -------------------------------------------------------------------------------
    Case(
        "CdbExecutionFailingClosed",
        [series("cdb_execution_fail_closed", "1x10", service="execution", **B)],
        "5m",
        [B],
    ),
    Case(
        "CdbExecutionFailingClosed",
        [series("cdb_execution_fail_closed", "0x10", service="execution", **B)],
        "5m",
    ),
    Case(
        "CdbOrdersRejected",
        [
            series("cdb_execution_orders_total", "0 0 1 1 1", status="REJECTED", **B),
            series("cdb_execution_orders_total", "0 1 2 3 4", status="FILLED", **B),
        ],
        "4m",
        [{**B, "status": "REJECTED"}],
        value="1",
    ),
    Case(
        "CdbOrdersRejected",
        [
            series("cdb_execution_orders_total", "0x4", status="REJECTED", **B),
            series("cdb_execution_orders_total", "0 1 2 3 4", status="FILLED", **B),
        ],
        "4m",
    ),
    # -- market data -----------------------------------------------------------------------------
    Case(
        "CdbMarketDataStale",
        STALE,
        "10m",
        [{**B, "symbol": "BTC_USDT"}],
        value="10m 0s",
    ),
    Case("CdbMarketDataStale", FRESH, "10m"),
    Case(
        "CdbMarketDataStaleHeldSymbol",
        [*STALE, series("cdb_risk_position_value", "500x10", symbol="BTC_USDT", **B)],
        "10m",
        [{**B, "symbol": "BTC_USDT"}],
        value="10m 0s",
    ),
    Case(
        "CdbMarketDataStaleHeldSymbol",  # stale, but the position is in another symbol
        [*STALE, series("cdb_risk_position_value", "500x10", symbol="ETH_USDT", **B)],
        "10m",
    ),
    Case(
        "CdbMarketDataStaleHeldSymbol",  # held, prices fresh
        [*FRESH, series("cdb_risk_position_value", "500x10", symbol="BTC_USDT", **B)],
        "10m",
    ),
    Case(
        "CdbNoMarketData",
        [series("cdb_events_consumed_total", "7x30", service="risk", stream="market_data", **B)],
        "20m",
        [B],
    ),
    Case(
        "CdbNoMarketData",
        [series("cdb_events_consumed_total", "0+10x30", service="risk", stream="market_data", **B)],
        "20m",
    ),
    # -- services --------------------------------------------------------------------------------
    Case(
        "CdbServiceDown",
        [series("up", "0x10", service="risk", instance="risk:8002", job=f"{BOT}-risk", **B)],
        "5m",
        [{**B, "service": "risk", "instance": "risk:8002", "job": f"{BOT}-risk"}],
    ),
    Case("CdbServiceDown", EVERY, "5m"),
    Case("CdbServiceAbsent", EVERY[:-1], "10m", [B], value=str(len(EVERY) - 1)),
    Case("CdbServiceAbsent", EVERY, "10m"),
    Case(
        "CdbBotNotScraped",
        [series("cdb_operator_breaker_engaged", "0x20", namespace=NS, name=BOT)],
        "15m",
        [B],
    ),
    Case(
        "CdbBotNotScraped",
        [series("cdb_operator_breaker_engaged", "0x20", namespace=NS, name=BOT), *EVERY],
        "8m",
    ),
    Case(
        "CdbDeadLettersIncreasing",
        [
            series(
                "cdb_events_dead_lettered_total",
                "0 0 0 1 1",
                service="persistence",
                stream="signals",
                **B,
            )
        ],
        "4m",
        [{**B, "service": "persistence", "stream": "signals"}],
        value="1",
    ),
    Case(
        "CdbDeadLettersIncreasing",
        [
            series(
                "cdb_events_dead_lettered_total",
                "3x10",
                service="persistence",
                stream="signals",
                **B,
            )
        ],
        "4m",
    ),
    Case(
        "CdbRedisUnreachable",
        [series("cdb_redis_up", "0x10", service="signal", **B)],
        "5m",
        [{**B, "service": "signal"}],
    ),
    Case("CdbRedisUnreachable", [series("cdb_redis_up", "1x10", service="signal", **B)], "5m"),
    Case(
        "CdbPostgresUnreachable",
        [series("cdb_postgres_up", "0x10", service="persistence", **B)],
        "5m",
        [{**B, "service": "persistence"}],
    ),
    Case(
        "CdbPostgresUnreachable",  # one failed call, recovered within a minute
        [series("cdb_postgres_up", "1 0 1 1 1 1 1 1", service="persistence", **B)],
        "5m",
    ),
    # -- money -----------------------------------------------------------------------------------
    Case(
        "CdbDrawdownNearLimit",
        [
            series("cdb_risk_drawdown_ratio", "0.045x5", **B),
            series("cdb_risk_limit_drawdown_ratio", "0.05x5", **B),
        ],
        "2m",
        [B],
        value="90%",
    ),
    Case(
        "CdbDrawdownNearLimit",
        [
            series("cdb_risk_drawdown_ratio", "0.03x5", **B),
            series("cdb_risk_limit_drawdown_ratio", "0.05x5", **B),
        ],
        "2m",
    ),
    # -- backups (kube-state-metrics) ------------------------------------------------------------
    Case(
        "CdbBackupTooOld",
        [
            series("kube_cronjob_status_last_successful_time", "0x400", **CRON),
            series("kube_cronjob_status_last_schedule_time", f"{DAY}x400", **CRON),
            series("kube_cronjob_next_schedule_time", f"{2 * DAY}x400", **CRON),
            series("cdb_build_info", "1x400", version="0.1.0", **B),
        ],
        "26h",
        [CRON],
        interval="4m",  # lookback 5m: every evaluation sees a sample
        value="1d 2h 0m 0s",
    ),
    Case(
        "CdbBackupTooOld",  # good backups all along; a stale one outside any bot's namespace
        [
            series("kube_cronjob_status_last_successful_time", "0+240x400", **CRON),
            series("kube_cronjob_status_last_schedule_time", "0+240x400", **CRON),
            series("kube_cronjob_next_schedule_time", "3600+240x400", **CRON),
            series(
                "kube_cronjob_status_last_successful_time",
                "0x400",
                namespace="x",
                cronjob="a-backup",
            ),
            series(
                "kube_cronjob_status_last_schedule_time",
                f"{DAY}x400",
                namespace="x",
                cronjob="a-backup",
            ),
            series(
                "kube_cronjob_next_schedule_time",
                f"{2 * DAY}x400",
                namespace="x",
                cronjob="a-backup",
            ),
            series("cdb_build_info", "1x400", version="0.1.0", **B),
        ],
        "26h",
        interval="4m",
    ),
    Case(
        "CdbBackupFailed",
        [
            series("kube_cronjob_status_last_successful_time", "0x400", **CRON),
            series("kube_cronjob_status_last_schedule_time", f"{DAY}x400", **CRON),
            series("cdb_build_info", "1x400", version="0.1.0", **B),
        ],
        "3h",
        [CRON],
        interval="4m",
    ),
    Case(
        "CdbBackupFailed",  # never succeeded at all
        [
            series("kube_cronjob_status_last_schedule_time", f"{DAY}x400", **CRON),
            series("cdb_build_info", "1x400", version="0.1.0", **B),
        ],
        "3h",
        [CRON],
        interval="4m",
    ),
    Case(
        "CdbBackupFailed",  # the last run succeeded after it started
        [
            series("kube_cronjob_status_last_successful_time", f"{DAY + 300}x400", **CRON),
            series("kube_cronjob_status_last_schedule_time", f"{DAY}x400", **CRON),
            series("cdb_build_info", "1x400", version="0.1.0", **B),
        ],
        "3h",
        interval="4m",
    ),
]

_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")
_VALUE = re.compile(r"\{\{\s*\$value[^}]*\}\}")


def expected_annotations(alert: alerts.Alert, labels: dict, value: str) -> dict:
    """The annotations as Prometheus should render them for these labels and value."""
    rule = alert.rule()["annotations"]
    return {
        k: _VALUE.sub(value, _LABEL.sub(lambda m: labels.get(m.group(1), ""), text))
        for k, text in rule.items()
    }


def promtool_tests(rules_path: Path) -> dict:
    by_name = {a.name: a for a in alerts.ALERTS}
    tests = []
    for case in CASES:
        alert = by_name[case.alert]
        exp = []
        for labels in case.fires:
            full = {**labels, "severity": alert.severity}
            exp.append(
                {
                    "exp_labels": full,
                    "exp_annotations": expected_annotations(alert, full, case.value),
                }
            )
        tests.append(
            {
                "name": f"{case.alert} {'fires' if exp else 'stays silent'}",
                "interval": case.interval,
                "input_series": case.input,
                "alert_rule_test": [
                    {"eval_time": case.at, "alertname": case.alert, "exp_alerts": exp}
                ],
            }
        )
    return {"rule_files": [str(rules_path)], "evaluation_interval": "1m", "tests": tests}


def test_the_chart_ships_the_generated_rules():
    assert RULES_FILE.read_text() == alerts.rules_yaml(), (
        "regenerate: python3 -m cdb_operator.render.alerts > " + str(RULES_FILE.relative_to(REPO))
    )


def test_promtool_check_rules():
    proc = subprocess.run(
        [binary("promtool"), "check", "rules", str(RULES_FILE)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts.ALERTS)} rules found" in proc.stdout


def test_every_alert_has_labels_annotations_and_a_case_each_way():
    for alert in alerts.ALERTS:
        rule = alert.rule()
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        cases = [c for c in CASES if c.alert == alert.name]
        assert any(c.fires for c in cases), f"{alert.name}: no case where it fires"
        assert any(not c.fires for c in cases), f"{alert.name}: no case where it stays silent"


def test_promtool_unit_tests(tmp_path):
    path = tmp_path / "alerts.test.yaml"
    path.write_text(yaml.safe_dump(promtool_tests(RULES_FILE), sort_keys=False))
    proc = subprocess.run(
        [binary("promtool"), "test", "rules", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_would_catch_a_wrong_expectation(tmp_path):
    """The harness can fail: a silent case claimed to fire makes promtool fail."""
    wrong = promtool_tests(RULES_FILE)
    silent = next(t for t in wrong["tests"] if not t["alert_rule_test"][0]["exp_alerts"])
    silent["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    path = tmp_path / "wrong.test.yaml"
    path.write_text(yaml.safe_dump(wrong, sort_keys=False))
    proc = subprocess.run([binary("promtool"), "test", "rules", str(path)], capture_output=True)
    assert proc.returncode != 0


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings (lower case, punctuation dropped, spaces → -)."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_runbook_sections_exist_and_the_operator_guide_lists_every_alert():
    runbook = (REPO / "docs" / "runbook.md").read_text()
    guide = (REPO / "docs" / "operator.md").read_text()
    anchors = github_anchors(runbook)
    for alert in alerts.ALERTS:
        url = alert.rule()["annotations"]["runbook_url"]
        assert url.startswith(alerts.RUNBOOK_URL + "#")
        assert alert.anchor in anchors, f"docs/runbook.md has no section ### {alert.name}"
        row = next((ln for ln in guide.splitlines() if f"`{alert.name}`" in ln), None)
        assert row, f"docs/operator.md does not list {alert.name}"
        assert f"runbook.md#{alert.anchor}" in row, f"{alert.name}: no runbook link in its row"


def test_the_rules_and_the_dashboard_count_every_service_the_operator_runs():
    """A service left out of alerts.SERVICES is one whose outage pages nobody (the dashboard,
    with the kill switch, once was)."""
    from cdb_operator import model

    assert set(alerts.SERVICES) == set(model.SERVICES)
    from test_chart_dashboard import DASHBOARD

    (panel,) = [p for p in DASHBOARD["panels"] if p.get("title") == "Services up"]
    (target,) = panel["targets"]
    assert "|".join(alerts.SERVICES) in target["expr"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == len(model.SERVICES)
