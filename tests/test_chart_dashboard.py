"""The Grafana dashboard: well-formed, covers what a person watching a bot needs, and asks
only for metrics the code exports (a renamed metric fails here, not on a blank panel)."""

from __future__ import annotations

import json
import re

from k8s_tools import CHART_DIR, REPO

DASHBOARD = json.loads((CHART_DIR / "files" / "dashboards" / "claire-de-binare.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
#: Suffixes prometheus_client adds to a declared name.
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "le"}


def exprs() -> list[str]:
    return [t["expr"] for p in PANELS for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers followed by a label matcher."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr)) - PROMQL_WORDS


def declared_metrics() -> set[str]:
    """Every metric name the Python sources declare: string literals that look like one
    (``cdb_…``, the old names kept as aliases), in files that export metrics."""
    literal = re.compile(r"[\"']((?:cdb|signals?|feed)_[a-z0-9_]+)[\"']")
    names: set[str] = set()
    for root in ("services", "operator"):
        for path in (REPO / root).rglob("*.py"):
            text = path.read_text()
            if (
                "MetricFamily" in text
                or "Gauge(" in text
                or "Counter(" in text
                or "Histogram(" in text
            ):
                names |= set(literal.findall(text))
    return names


def base_name(metric: str) -> str:
    for suffix in SUFFIXES:
        if metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def test_every_queried_metric_is_exported_by_the_code():
    declared = declared_metrics()
    assert {"cdb_redis_up", "cdb_events_dead_lettered", "cdb_signal_generated"} <= declared
    queried = set().union(*(metric_names(e) for e in exprs()))
    assert queried
    queried.discard("up")  # Prometheus' own, per target
    missing = {m for m in queried if base_name(m) not in declared and m not in declared}
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_it_shows_what_the_issue_asks_for():
    text = " ".join(exprs())
    for metric in (
        "cdb_signal_generated_total",  # signals
        'stream="orders"',  # orders
        "cdb_execution_orders_total",  # fills
        "cdb_risk_equity",  # equity
        "cdb_risk_drawdown_ratio",  # drawdown
        "cdb_risk_daily_pnl",  # P&L
        "cdb_execution_realized_pnl",
        "cdb_risk_unrealized_pnl",
        "cdb_risk_exposure_ratio",  # exposure
        "cdb_risk_market_data_timestamp_seconds",  # data age per symbol
        "cdb_risk_breaker_reason",  # breaker history
        "cdb_risk_breaker_engaged",  # breaker state
        "cdb_events_dead_lettered_total",  # dead-lettered events
    ):
        assert metric in text, metric
    titles = " ".join(p["title"].lower() for p in PANELS)
    for word in (
        "signals",
        "orders",
        "fills",
        "equity",
        "drawdown",
        "breaker",
        "dead-lettered",
        "p&l",
        "exposure over time",
        "age per symbol",
        "breaker history",
    ):
        assert word in titles, word


def test_layout_and_datasource():
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASHBOARD["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]
    for p in PANELS:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert 'namespace=~"$namespace", bot=~"$bot"' in t["expr"], t["expr"]
    names = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert names == {"datasource", "namespace", "bot"}
    assert DASHBOARD["uid"] == "claire-de-binare"


def test_panels_do_not_overlap():
    taken: set[tuple[int, int]] = set()
    for p in DASHBOARD["panels"]:
        g = p["gridPos"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & taken, p["title"]
        taken |= cells
