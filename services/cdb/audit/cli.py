"""``cdb report``: the last week (or ``--since``/``--until``) of the live audit trail as a report.

The same figures as ``cdb backtest`` (trades, win rate, P&L, drawdown, Sharpe/Sortino,
fees, breaker trips, pauses, exposure) from what really happened, plus rule compliance
(``cdb.audit.compliance``), as text, JSON and HTML in ``--out``. Reads the database
named by the ``POSTGRES_*`` variables, the limits from the risk manager's variables.
Exit codes: 0 report written (violations are listed in it), 1 database unreachable,
2 bad argument or setting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

WEEK = 7 * 86_400


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="start: Unix seconds or YYYY-MM-DD (default: a week ago)")
    p.add_argument("--until", help="end: Unix seconds or YYYY-MM-DD (default: now)")
    p.add_argument("--out", type=Path, default=Path("live-report"), help="report directory")
    p.add_argument("--json", action="store_true", help="print the JSON figures")


def _when(text: str, option: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is neither Unix seconds nor YYYY-MM-DD") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def main(args: argparse.Namespace) -> int:
    """Run the command; a missing module of the ``backtest`` extra is named (exit 2)."""
    from cdb.backtest import missing_extra

    try:
        return _main(args)
    except ModuleNotFoundError as exc:
        return missing_extra("report", exc)


def _main(args: argparse.Namespace) -> int:
    import psycopg2

    from cdb.audit import compliance, trail
    from cdb.backtest import render
    from cdb.db.connect import connect
    from cdb.risk.settings import RiskSettings
    from cdb.settings import SettingsError, load_settings

    try:
        until = _when(args.until, "--until") if args.until else int(time.time())
        since = _when(args.since, "--since") if args.since else until - WEEK
        if since >= until:
            raise ValueError("--since must be before --until")
        settings = load_settings(RiskSettings)
    except (ValueError, SettingsError) as exc:
        print(f"cdb report: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    try:
        conn = connect(settings, application_name="cdb-report")
    except psycopg2.OperationalError as exc:
        print(f"cdb report: database unreachable: {str(exc).strip()}", file=sys.stderr)
        return 1
    try:
        result = trail.load(conn, since, until, settings.QUOTE_ASSET, settings.PAPER_START_BALANCE)
        checked = compliance.check(conn, since, until, settings.limits())
    finally:
        conn.close()
    title = f"Live report {render.when(since)} → {render.when(until)} UTC"
    report = render.report_dict(result, title)
    report["compliance"] = checked
    paths = render.write_all(report, args.out)
    if args.json:
        print(json.dumps(report["figures"], indent=1, default=str))
    else:
        print(render.text(report), end="")
        print(f"report: {paths['html']} (and .json, .txt, .png)")
    return 0
