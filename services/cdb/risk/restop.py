"""``python -m cdb.risk.restop``: move the stop loss of open positions to today's STOP_LOSS_PCT.

A position's stop is set by its buy fills (``STOP_LOSS_PCT`` below its average entry price,
moved at each buy that adds to it) and kept in ``positions.stop_loss``; changing
``STOP_LOSS_PCT`` alone moves no open position's stop (only their next buy fill would). To
re-stop the open ones now:

    python -m cdb.risk.restop                      # show what would change (dry run)
    python -m cdb.risk.restop --apply              # STOP_LOSS_PCT of the environment
    python -m cdb.risk.restop --apply --pct 3 --symbol BTC_USDT

then restart the risk manager, which reads the stops at start
(``kubectl rollout restart deployment/<bot>-risk``; with ``cdb up``, stop and start it).
Each change is written to ``risk_events`` (decision ``restop``) for the audit trail.
It reads the same environment variables as the risk manager (POSTGRES_*, STOP_LOSS_PCT).
"""

from __future__ import annotations

import argparse
import sys
import time

from psycopg2.extras import Json

from cdb.db.connect import connect
from cdb.risk.settings import RiskSettings
from cdb.settings import SettingsError, exit_on_bad_settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdb.risk.restop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--pct", type=float, default=None, help="stop distance, %% (default: STOP_LOSS_PCT)"
    )
    p.add_argument("--symbol", action="append", default=[], help="only these symbols (repeatable)")
    p.add_argument("--apply", action="store_true", help="write the new stops (default: dry run)")
    return p


def new_stop(avg_price: float, pct: float) -> float:
    """``pct`` percent below the average entry price, the rule a new position gets."""
    return avg_price * (1 - pct / 100.0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(RiskSettings)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    pct = settings.STOP_LOSS_PCT if args.pct is None else args.pct
    if not 0 < pct < 100:
        print(f"--pct must be between 0 and 100, got {pct}", file=sys.stderr)
        return 2
    conn = connect(settings, application_name="cdb-restop")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT symbol, quantity, avg_price, stop_loss FROM positions"
                " WHERE quantity > 0 ORDER BY symbol FOR UPDATE"
            )
            rows = [r for r in cur.fetchall() if not args.symbol or r[0] in args.symbol]
            now = int(time.time())
            for symbol, quantity, avg, old in rows:
                stop = new_stop(avg, pct)
                print(f"{symbol}\t{quantity:g} @ {avg:g}\tstop {old} -> {stop:g} ({pct:g} %)")
                if not args.apply:
                    continue
                cur.execute("UPDATE positions SET stop_loss = %s WHERE symbol = %s", (stop, symbol))
                cur.execute(
                    "INSERT INTO risk_events (event_key, ts, severity, decision, rule,"
                    " description, symbol, context) VALUES (%s,%s,'INFO','restop','stop_loss',"
                    "%s,%s,%s) ON CONFLICT (event_key) DO NOTHING",
                    (
                        f"restop:{symbol}:{now}",
                        now,
                        f"stop of {symbol} moved by hand from {old} to {stop:g} ({pct:g} % "
                        f"below the entry {avg:g})",
                        symbol,
                        Json({"old": old, "new": stop, "pct": pct}),
                    ),
                )
    finally:
        conn.close()
    if not rows:
        print("no open position to re-stop")
    elif args.apply:
        print(f"{len(rows)} stop(s) moved; restart the risk manager to use them")
    else:
        print("dry run: nothing changed (add --apply)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
