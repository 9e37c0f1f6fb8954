"""The live services and ``cdb backtest`` make the same decisions on the same candles.

One candle file, two runs:

* live: every service a separate process on real Redis and PostgreSQL, the feed replaying
  the file (``FEED_SOURCE=replay``, timestamps shifted to now, paced at 120× so each
  fill is back before the next candle, as it would be at real speed);
* backtest: ``cdb backtest`` on the same file with the same variables.

The file walks through the rules: an approved entry, a clipped one, a rejection at the
open-position limit, a stop loss, an entry after it, and an abnormal move that pauses a
symbol. Compared: every decision (kind, rule, symbol) in order, every fill (side, symbol,
quantity, price, fee), and ``cdb report`` on the live audit trail against the backtest's
report (trades, win rate, P&L of closed trades per symbol, fees).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
from helpers import ServiceProcess, wait_until

from cdb.db.migrate import migrate
from cdb.settings import PostgresSettings

REPO = Path(__file__).resolve().parents[1]
T0 = 1_735_689_600_000
MIN = 60_000
SETTINGS = {
    "SIGNAL_LOOKBACK_MIN": "5",
    "SIGNAL_MIN_VOLUME": "1000",
    "SIGNAL_THRESHOLD_PCT": "3",
    "SIGNAL_COOLDOWN_S": "300",
    "MAX_OPEN_POSITIONS": "2",
    "MAX_POSITION_PCT": "12",
    "PAPER_FEE_PCT": "0.1",
    "PAPER_SLIPPAGE_PCT": "0.05",
}
#: (row, symbol) → close relative to 100 from that row on (each symbol starts at 100)
STEPS = {
    (12, "AAA_USDT"): 105.0,  # +5 %: confidence 0.5 → 10 % of equity, approved
    (15, "BBB_USDT"): 108.0,  # +8 %: 16 % asked, clipped to the 12 % position limit
    (18, "CCC_USDT"): 104.0,  # +4 %: two positions open → rejected
    (22, "AAA_USDT"): 100.5,  # below the stop (2 % under the entry): closed
    (30, "DDD_USDT"): 105.0,  # +5 %: a slot is free again → approved
    (40, "CCC_USDT"): 117.0,  # +12.5 % within the window: abnormal move → paused, refused
}
ROWS = 50


def candle_file(path: Path) -> Path:
    lines = ["timestamp,symbol,open,high,low,close,volume"]
    level = dict.fromkeys(("AAA_USDT", "BBB_USDT", "CCC_USDT", "DDD_USDT"), 100.0)
    for row in range(ROWS):
        for sym in sorted(level):
            o = level[sym]
            c = STEPS.get((row, sym), o)
            level[sym] = c
            lines.append(f"{T0 + row * MIN},{sym},{o},{max(o, c)},{min(o, c)},{c},100")
    path.write_text("\n".join(lines) + "\n")
    return path


def env_with(extra: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'services'}:{REPO / 'operator'}",
        **SETTINGS,
        **extra,
    }


def test_live_services_and_backtest_decide_the_same(redis_env, pg_env, tmp_path):
    data = candle_file(tmp_path / "candles.csv")
    # -- the backtest -----------------------------------------------------------------------
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "backtest", str(data), "--out", "bt", "--no-progress"],
        cwd=tmp_path, env=env_with({}), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bt = json.loads((tmp_path / "bt" / "report.json").read_text())
    decisions = bt["figures"]["decisions"]
    assert decisions == {
        "approve/approved": 2,
        "clip/position": 1,
        "reject/open_positions": 1,
        "exit/stop_loss": 1,
        "pause/abnormal_move": 1,
    }

    # -- the live services ------------------------------------------------------------------
    migrate(PostgresSettings(**pg_env))
    log_dir = Path(tempfile.mkdtemp(prefix="cdb-bt-live-"))
    live_env = {
        **redis_env,
        **pg_env,
        **SETTINGS,
        "FEED_SOURCE": "replay",
        "FEED_REPLAY_FILES": str(data),
        "FEED_REPLAY_SHIFT_TO_NOW": "true",
        "FEED_REPLAY_SPEED": "120",
        "EVENT_MAX_LEAD_S": "604800",  # as cdb up --feed replay: the stamps run ahead
        "FEED_REPLAY_AT_END": "idle",
        "HEALTH_INTERVAL_S": "2",
    }
    procs: dict[str, ServiceProcess] = {}
    dsn = PostgresSettings(**pg_env).postgres_dsn()

    def sql(query: str) -> list[tuple]:
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall()
        conn.close()
        return rows

    expected = sum(decisions.values())
    try:
        for name in ("persistence", "execution", "risk", "signal", "feed"):
            procs[name] = ServiceProcess(name, live_env, log_dir).start(timeout=60)
        wait_until(
            lambda: procs["feed"].status().get("finished") is True,
            timeout=120,
            message=f"replay finished (logs {log_dir})",
        )
        query = (
            "SELECT (SELECT s.ts FROM signals s WHERE s.signal_id = r.signal_id), decision, "
            "rule, symbol, client_id FROM risk_events r "
            "WHERE signal_id IS NOT NULL OR event_key LIKE 'exit:%' ORDER BY r.ts, r.id"
        )
        wait_until(lambda: len(sql(query)) >= expected, timeout=60, message="all decided")
        wait_until(
            lambda: (
                sql("SELECT count(*) FROM orders WHERE status = 'NEW' OR status = 'SENT'") == [(0,)]
                and sql("SELECT count(*) FROM trades")[0][0] == len(bt["fills"])
            ),
            timeout=60,
            message="every order filled",
        )
        time.sleep(1)  # nothing more arrives
        live = sql(query)
        trades = sql("SELECT side, symbol, quantity, price, fee FROM trades ORDER BY ts, id")
    finally:
        codes = {n: p.stop(timeout=30) for n, p in reversed(procs.items())}
    assert all(code == 0 for code in codes.values()), f"{codes} (logs {log_dir})"

    # -- same decisions, same fills ---------------------------------------------------------
    bt_log = [(d["ts"], d["decision"], d["rule"], d["symbol"]) for d in bt["decisions_log"]]
    assert [(d, r, s) for _, d, r, s, _ in live] == [(d, r, s) for _, d, r, s in bt_log]
    # decided on the same candles: the signals' event times (shifted to now by the feed)
    shift = live[0][0] - bt_log[0][0]
    assert [(ts - shift, d) for ts, d, *_ in live if ts is not None] == [
        (ts, d) for ts, d, _, _ in bt_log if d != "exit"
    ]
    bt_fills = [(f["side"], f["symbol"], f["quantity"], f["price"], f["fee"]) for f in bt["fills"]]
    assert len(trades) == len(bt_fills) == 4  # 2 approved, 1 clipped, 1 stop loss
    for got, want in zip(trades, bt_fills, strict=True):
        assert got[:2] == want[:2]
        assert got[2:] == pytest.approx(want[2:], rel=1e-12)

    # -- cdb report on the audit trail says what the backtest said ---------------------------
    since = live[0][0] - 3600
    done = subprocess.run(
        [sys.executable, "-m", "cdb", "report", "--since", str(since), "--out", "live"],
        cwd=tmp_path, env=env_with(pg_env), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rep = json.loads((tmp_path / "live" / "report.json").read_text())
    f, g = rep["figures"], bt["figures"]
    for key in ("trades", "open_trades", "wins", "win_rate_pct", "fills"):
        assert f[key] == g[key], key
    for key in ("fees_paid", "pnl_closed_trades"):
        assert f[key] == pytest.approx(g[key], rel=1e-9), key
    assert f["per_symbol"].keys() == g["per_symbol"].keys()
    compliance = rep["compliance"]
    assert compliance["orders"] == 4 and compliance["traced"] == 4
    assert compliance["violations"] == []
