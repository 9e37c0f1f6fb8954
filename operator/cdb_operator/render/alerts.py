"""The alert rules for every TradingBot: one source for the chart's PrometheusRule and the docs.

``rule_groups()`` gives the rules in Prometheus' rule-file shape (``{"groups": [...]}``),
which is also a PrometheusRule's ``spec``. The chart ships them as
``files/alerts/claire-de-binare.rules.yaml`` (regenerate: ``python3 -m
cdb_operator.render.alerts > charts/claire-de-binare/files/alerts/claire-de-binare.rules.yaml``;
a test compares). The rules are generic: each groups by ``namespace`` and ``bot`` (the target
labels the operator's ServiceMonitor sets, render/monitoring.py), and compares with the bot's
own limits (``cdb_risk_limit_*`` gauges) rather than a hard-coded figure.

Every alert has a ``severity`` label (``critical``: trading is at risk now, a person acts;
``warning``: something degrades, look today), a summary, a description and a
``runbook_url`` into docs/runbook.md section 6, one heading per alert.

Backup alerts read kube-state-metrics' CronJob series (``kube_cronjob_*``, shipped by
kube-prometheus-stack); without it they stay silent.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

#: Where runbook links point (the repository named in the chart's Chart.yaml ``home``).
RUNBOOK_URL = "https://github.com/claire-de-binare/claire-de-binare/blob/main/docs/runbook.md"

#: The services each bot runs (model.SERVICES; repeated here so the rules stay pure data).
SERVICES = ("feed", "signal", "risk", "execution", "persistence", "notifier", "dashboard")

#: Share of the daily drawdown limit at which CdbDrawdownNearLimit fires.
DRAWDOWN_WARN_SHARE = 0.8

BOT = "namespace, bot"
_ANY_SERVICE = "|".join(SERVICES)
#: Backup CronJobs are ``<bot>-backup``; only those in namespaces running a bot count.
_BOT_NAMESPACES = "group by (namespace) (cdb_build_info)"
_LAST_RUN = (
    'max by (namespace, cronjob) (kube_cronjob_status_last_schedule_time{cronjob=~".+-backup"})'
)
_LAST_GOOD = (
    'max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{cronjob=~".+-backup"})'
)


@dataclass(frozen=True)
class Alert:
    """One alerting rule and what a person does about it (docs/runbook.md ``### <name>``)."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    action: str  # one line for docs/operator.md's alert table

    @property
    def anchor(self) -> str:
        """The GitHub anchor of the runbook heading ``### <name>``."""
        return self.name.lower()

    def rule(self) -> dict:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{RUNBOOK_URL}#{self.anchor}",
            },
        }


ALERTS: tuple[Alert, ...] = (
    Alert(
        "CdbKillSwitchEngaged",
        f'max by ({BOT}) (cdb_risk_breaker_reason{{reason="kill_switch"}}) == 1',
        "0m",
        "critical",
        "Kill switch engaged on {{ $labels.bot }}: every order stops, exits too",
        "The risk manager of bot {{ $labels.namespace }}/{{ $labels.bot }} holds the kill "
        "switch: no order leaves, not even the one closing a position.",
        "Check the open positions and decide by hand; release when safe.",
    ),
    Alert(
        "CdbBreakerEngaged",
        f'max by ({BOT}, reason) (cdb_risk_breaker_reason{{reason!="kill_switch"}}) == 1',
        "1m",
        "warning",
        "Circuit breaker engaged on {{ $labels.bot }} ({{ $labels.reason }})",
        "No new position is opened on {{ $labels.namespace }}/{{ $labels.bot }} while the "
        "breaker holds; cause: {{ $labels.reason }} (manual or drawdown; the kill switch "
        "has its own alert).",
        "Find why it tripped (status.breaker, risk_events); release only when the cause is gone.",
    ),
    Alert(
        "CdbBreakerUnconfirmed",
        "max by (namespace, name) (cdb_operator_breaker_pending) == 1",
        "5m",
        "critical",
        "Breaker request for {{ $labels.name }} not confirmed by the risk manager",
        "The operator delivered a breaker change for {{ $labels.namespace }}/{{ $labels.name }} "
        "more than 5 minutes ago and the risk manager has not confirmed it.",
        "Check the risk manager is up and reads the control stream; the operator keeps retrying.",
    ),
    Alert(
        "CdbExecutionFailingClosed",
        f"max by ({BOT}) (cdb_execution_fail_closed) == 1",
        "1m",
        "critical",
        "Execution of {{ $labels.bot }} refuses new orders (failing closed)",
        "The execution service of {{ $labels.namespace }}/{{ $labels.bot }} refuses new "
        "orders: an order's outcome is unknown or the exchange answers inconsistently.",
        "Read the execution's /health problems; resolve UNKNOWN orders (runbook section 4).",
    ),
    Alert(
        "CdbMarketDataStale",
        f"time() - max by ({BOT}, symbol) (cdb_risk_market_data_timestamp_seconds)"
        f" > on ({BOT}) group_left max by ({BOT}) (cdb_risk_limit_market_data_age_seconds)",
        "2m",
        "warning",
        "No fresh market data for {{ $labels.symbol }} on {{ $labels.bot }}",
        "The latest {{ $labels.symbol }} price the risk manager of {{ $labels.namespace }}/"
        "{{ $labels.bot }} saw is {{ $value | humanizeDuration }} old, beyond "
        "RISK_MARKET_DATA_MAX_AGE_S: new entries in it are paused.",
        "Check the feed (its /status, the exchange's reachability) and the market_data stream.",
    ),
    Alert(
        "CdbMarketDataStaleHeldSymbol",
        f"(time() - max by ({BOT}, symbol) (cdb_risk_market_data_timestamp_seconds)"
        f" > on ({BOT}) group_left max by ({BOT}) (cdb_risk_limit_market_data_age_seconds))"
        f" and on ({BOT}, symbol) max by ({BOT}, symbol) (cdb_risk_position_value) > 0",
        "1m",
        "critical",
        "{{ $labels.bot }} holds {{ $labels.symbol }} without fresh prices: stop loss blind",
        "{{ $labels.namespace }}/{{ $labels.bot }} holds a {{ $labels.symbol }} position and "
        "its latest price is {{ $value | humanizeDuration }} old: the stop loss cannot act.",
        "Restore the feed now, or engage the breaker and close the position by hand.",
    ),
    Alert(
        "CdbNoMarketData",
        f"sum by ({BOT}) (rate(cdb_events_consumed_total"
        f'{{service="risk", stream="market_data"}}[10m])) == 0',
        "5m",
        "warning",
        "The risk manager of {{ $labels.bot }} reads no market data at all",
        "No market_data event reached the risk manager of {{ $labels.namespace }}/"
        "{{ $labels.bot }} for 15 minutes.",
        "Check the feed is running and publishing (cdb_feed_events_published_total).",
    ),
    Alert(
        "CdbServiceDown",
        f'up{{bot!="", service=~"{_ANY_SERVICE}"}} == 0',
        "2m",
        "critical",
        "{{ $labels.service }} of {{ $labels.bot }} is down",
        "Prometheus cannot scrape {{ $labels.service }} of {{ $labels.namespace }}/"
        "{{ $labels.bot }} ({{ $labels.instance }}).",
        "kubectl describe/logs the pod; look at its /health problems.",
    ),
    Alert(
        "CdbServiceAbsent",
        f"count by ({BOT}) (group by ({BOT}, service) "
        f'(up{{bot!="", service=~"{_ANY_SERVICE}"}})) < {len(SERVICES)}',
        "5m",
        "critical",
        f"{{{{ $labels.bot }}}} runs fewer than its {len(SERVICES)} services",
        f"Only {{{{ $value }}}} of the {len(SERVICES)} services of {{{{ $labels.namespace }}}}/"
        "{{ $labels.bot }} are scraped: a Deployment is missing, scaled to 0, or its Service lost its labels.",
        "kubectl get deploy,svc -l app.kubernetes.io/instance=BOT; read the TradingBot status.",
    ),
    Alert(
        "CdbBotNotScraped",
        'group by (namespace, bot) (label_replace(cdb_operator_breaker_engaged, "bot", "$1", '
        f'"name", "(.+)")) unless on ({BOT}) group by ({BOT}) (up{{bot!=""}})',
        "10m",
        "warning",
        "TradingBot {{ $labels.bot }} exists but none of its services is scraped",
        "The operator reconciles {{ $labels.namespace }}/{{ $labels.bot }} but Prometheus "
        "scrapes none of its services: no ServiceMonitor, or Prometheus does not select it.",
        "Check status.monitoring and the ServiceMonitor's labels against Prometheus' selector.",
    ),
    Alert(
        "CdbDeadLettersIncreasing",
        f"sum by ({BOT}, service, stream) (increase(cdb_events_dead_lettered_total[10m])) > 0",
        "0m",
        "warning",
        "{{ $labels.service }} of {{ $labels.bot }} dead-letters {{ $labels.stream }} entries",
        "{{ $value | humanize }} entries of {{ $labels.stream }} went to the dead_letter stream in 10 "
        "minutes ({{ $labels.namespace }}/{{ $labels.bot }}, {{ $labels.service }}).",
        "Read the dead_letter stream's reasons; fix the producer or the handler, then replay.",
    ),
    Alert(
        "CdbOrdersRejected",
        f"sum by ({BOT}, status) (increase(cdb_execution_orders_total"
        f'{{status=~"REJECTED|ERROR"}}[15m])) > 0',
        "0m",
        "warning",
        "Orders of {{ $labels.bot }} end {{ $labels.status }}",
        "{{ $value | humanize }} orders of {{ $labels.namespace }}/{{ $labels.bot }} ended "
        "{{ $labels.status }} in 15 minutes.",
        "Read the order_results' reasons (balance, minimum size, the exchange's answer).",
    ),
    Alert(
        "CdbRedisUnreachable",
        f"min by ({BOT}, service) (cdb_redis_up) == 0",
        "1m",
        "critical",
        "{{ $labels.service }} of {{ $labels.bot }} cannot reach Redis",
        "{{ $labels.service }} of {{ $labels.namespace }}/{{ $labels.bot }} cannot reach "
        "Redis: no events flow (they wait, none is lost).",
        "Check the Redis pod, its PVC and the NetworkPolicy; the services reconnect by themselves.",
    ),
    Alert(
        "CdbPostgresUnreachable",
        f"min by ({BOT}, service) (cdb_postgres_up) == 0",
        "2m",
        "critical",
        "{{ $labels.service }} of {{ $labels.bot }} cannot reach PostgreSQL",
        "The last PostgreSQL call of {{ $labels.service }} ({{ $labels.namespace }}/"
        "{{ $labels.bot }}) failed: decisions and the audit trail wait for the database.",
        "Check the PostgreSQL pod, its PVC, disk space and password Secret.",
    ),
    Alert(
        "CdbDrawdownNearLimit",
        f"max by ({BOT}) (cdb_risk_drawdown_ratio) / on ({BOT}) "
        f"max by ({BOT}) (cdb_risk_limit_drawdown_ratio) > {DRAWDOWN_WARN_SHARE}",
        "0m",
        "warning",
        "{{ $labels.bot }} lost {{ $value | humanizePercentage }} of its daily loss limit",
        "The daily drawdown of {{ $labels.namespace }}/{{ $labels.bot }} is above "
        f"{DRAWDOWN_WARN_SHARE:.0%} of MAX_DAILY_DRAWDOWN_PCT; at 100 % the breaker trips and "
        "every position is closed.",
        "Look at the open positions and the strategy; engage the breaker early if needed.",
    ),
    Alert(
        "CdbBackupTooOld",
        f"time() - {_LAST_GOOD} > max by (namespace, cronjob) "
        '(kube_cronjob_next_schedule_time{cronjob=~".+-backup"} '
        '- kube_cronjob_status_last_schedule_time{cronjob=~".+-backup"}) + 3600'
        f" and on (namespace) {_BOT_NAMESPACES}",
        "15m",
        "warning",
        "Last good backup of {{ $labels.cronjob }} is older than its schedule allows",
        "CronJob {{ $labels.namespace }}/{{ $labels.cronjob }} last succeeded "
        "{{ $value | humanizeDuration }} ago, more than one schedule period and an hour.",
        "Read the backup Jobs' logs; take a backup by hand (runbook section 1).",
    ),
    Alert(
        "CdbBackupFailed",
        f"({_LAST_RUN} > {_LAST_GOOD} or {_LAST_RUN} unless on (namespace, cronjob) {_LAST_GOOD})"
        f" and on (namespace) {_BOT_NAMESPACES}",
        "2h",
        "warning",
        "The latest backup run of {{ $labels.cronjob }} has not succeeded",
        "CronJob {{ $labels.namespace }}/{{ $labels.cronjob }} started a run more than two "
        "hours ago that has not succeeded (it failed, or is stuck; a run may take one hour).",
        "kubectl logs the latest backup Job; fix (space, password, PVC) and run one by hand.",
    ),
)


def rule_groups() -> dict:
    """The rule file: ``{"groups": [{"name": "claire-de-binare", "rules": [...]}]}``."""
    return {"groups": [{"name": "claire-de-binare", "rules": [a.rule() for a in ALERTS]}]}


def rules_yaml() -> str:
    """The chart's rule file, byte for byte."""
    head = (
        "# Generated from operator/cdb_operator/render/alerts.py — do not edit; regenerate with\n"
        "# python3 -m cdb_operator.render.alerts > charts/claire-de-binare/files/alerts/"
        "claire-de-binare.rules.yaml\n"
    )
    return head + yaml.safe_dump(rule_groups(), sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(rules_yaml())
