"""A report as text, JSON and a self-contained HTML page (equity and drawdown plot as PNG).

``report_dict`` is the one shape every output is made from (the JSON file is it); the
HTML page embeds a matplotlib figure (equity curve, drawdown, exposure) as a data URI,
so the page can be mailed or opened anywhere. ``compare_text`` puts two reports side by side.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

from cdb.backtest.metrics import drawdown_series, summarize


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def report_dict(result: dict[str, Any], title: str) -> dict[str, Any]:
    """Settings, figures, the curve and the fills of one run (JSON-ready)."""
    return {
        "title": title,
        "settings": result["settings"],
        "files": result.get("files", []),
        "figures": summarize(result),
        "seconds": result.get("seconds"),
        "loop_seconds": result.get("loop_seconds"),
        "curve": [list(p) for p in result["curve"]],
        "fills": result["fills"],
        "decisions_log": [
            {"ts": ts, "decision": d, "rule": r, "symbol": s, "client_id": c}
            for ts, d, r, s, c in result.get("log", [])
        ],
        "open_positions": result.get("open_positions", {}),
    }


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def figure_rows(f: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures as (label, value) lines, shared by text and HTML."""
    return [
        ("period", f"{when(f['period']['first_ts'])} → {when(f['period']['last_ts'])} UTC"),
        ("candles / symbols", f"{f['candles']:,} / {f['symbols']}"),
        ("signals", _num(f["signals"])),
        ("trades (closed / open)", f"{f['trades']} / {f['open_trades']}"),
        ("win rate", f"{_num(f['win_rate_pct'], 1)} %"),
        ("equity start → end", f"{_num(f['start_equity'])} → {_num(f['end_equity'])}"),
        ("P&L total", f"{_num(f['pnl_total'])} ({_num(f['pnl_total_pct'])} %)"),
        ("P&L of closed trades", _num(f["pnl_closed_trades"])),
        ("fees paid", _num(f["fees_paid"])),
        ("max drawdown", f"{_num(f['max_drawdown_pct'])} % at {when(f['max_drawdown_ts'])}"),
        ("Sharpe / Sortino (daily, ×√365)", f"{_num(f['sharpe'])} / {_num(f['sortino'])}"),
        (
            "exposure avg / max",
            f"{_num(f['exposure_avg_pct'], 1)} % / {_num(f['exposure_max_pct'], 1)} %",
        ),
        ("breaker trips", str(len(f["breaker_trips"]))),
        ("abnormal-market pauses", str(len(f["abnormal_market_pauses"]))),
    ]


def text(report: dict[str, Any]) -> str:
    f = report["figures"]
    lines = [report["title"], "=" * len(report["title"])]
    lines += [f"{label:<34} {value}" for label, value in figure_rows(f)]
    if f["per_symbol"]:
        lines += ["", f"{'symbol':<14} {'trades':>6} {'wins':>5} {'P&L':>12} {'fees':>10}"]
        for sym, row in f["per_symbol"].items():
            lines.append(
                f"{sym:<14} {row['trades']:>6} {row['wins']:>5} {row['pnl']:>12,.2f} "
                f"{row['fees']:>10,.2f}"
            )
    if f["exits"]:
        lines += ["", "exits: " + ", ".join(f"{k} {v}" for k, v in f["exits"].items())]
    if f["decisions"]:
        lines += ["decisions: " + ", ".join(f"{k} {v}" for k, v in f["decisions"].items())]
    for trip in f["breaker_trips"][:20]:
        lines.append(f"breaker trip {when(trip['ts'])}: {trip['reason']}")
    for p in f["abnormal_market_pauses"][:20]:
        lines.append(
            f"pause {p['symbol']} {when(p['start'])} → {when(p['end'])} "
            f"(move {_num(p.get('move_pct'), 1)} %)"
        )
    comp = report.get("compliance")
    if comp is not None:
        lines += [
            "",
            f"rule compliance: {comp['orders']} orders, {comp['traced']} traced to their "
            f"decision, {len(comp['violations'])} violation(s)",
        ]
        for v in comp["violations"][:50]:
            lines.append(
                f"  VIOLATION {when(v['ts'])} {v['side']} {v['symbol']} {v['client_id']}: "
                f"{', '.join(v['failed'])}"
            )
    more = len(f["abnormal_market_pauses"]) - 20
    if more > 0:
        lines.append(f"... and {more} more pauses (JSON report)")
    return "\n".join(lines) + "\n"


def plot_png(report: dict[str, Any]) -> bytes:
    """Equity, drawdown and exposure over time as one PNG (matplotlib, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, faster to import

    curve = report["curve"]
    times = [dt.datetime.fromtimestamp(p[0], dt.UTC) for p in curve]
    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 1]})
    ax1.plot(times, [p[1] for p in curve], color="#1f5fa8", lw=1.2)
    ax1.set_ylabel("equity")
    ax1.set_title(report["title"])
    ax1.grid(alpha=0.3)
    dd = [-d for d in drawdown_series([tuple(p) for p in curve])]
    ax2.fill_between(times, dd, 0, color="#c0392b", alpha=0.5, step="post")
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    ax3.plot(times, [p[2] for p in curve], color="#555", lw=0.8, drawstyle="steps-post")
    ax3.set_ylabel("exposure %")
    ax3.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def html_page(report: dict[str, Any], png: bytes) -> str:
    """A self-contained page: figures, per-symbol table, plot, decisions, trips, pauses."""
    f = report["figures"]
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(a)}</th><td>{esc(b)}</td></tr>" for a, b in figure_rows(f))
    sym = "".join(
        f"<tr><td>{esc(s)}</td><td>{r['trades']}</td><td>{r['wins']}</td>"
        f"<td>{r['pnl']:,.2f}</td><td>{r['fees']:,.2f}</td></tr>"
        for s, r in f["per_symbol"].items()
    )
    settings = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in report["settings"].items()
    )
    events = "".join(
        f"<li>breaker trip {when(t['ts'])}: {esc(t['reason'])}</li>" for t in f["breaker_trips"]
    ) + "".join(
        f"<li>pause {esc(p['symbol'])} {when(p['start'])} → {when(p['end'])}</li>"
        for p in f["abnormal_market_pauses"][:200]
    )
    img = base64.b64encode(png).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(report["title"])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:2px 10px;text-align:left;
border-bottom:1px solid #ddd}}</style></head><body>
<h1>{esc(report["title"])}</h1>
<table id="figures">{rows}</table>
<img alt="equity, drawdown and exposure" src="data:image/png;base64,{img}" width="900">
<h2>Per symbol (closed trades)</h2>
<table id="per-symbol"><tr><th>symbol</th><th>trades</th><th>wins</th><th>P&amp;L</th>
<th>fees</th></tr>{sym}</table>
<h2>Decisions</h2><p>{esc(", ".join(f"{k} {v}" for k, v in f["decisions"].items()))}</p>
<h2>Breaker trips and abnormal-market pauses</h2><ul>{events or "<li>none</li>"}</ul>
{_compliance_html(report)}
<h2>Settings</h2><table>{settings}</table>
</body></html>
"""


def _compliance_html(report: dict[str, Any]) -> str:
    comp = report.get("compliance")
    if comp is None:
        return ""
    rows = "".join(
        f"<tr><td>{when(c['ts'])}</td><td>{html.escape(c['side'])} {html.escape(c['symbol'])}</td>"
        f"<td>{html.escape(str(c['decision']))}/{html.escape(str(c['rule']))}</td><td>"
        + ", ".join(f"{html.escape(k)} {'ok' if ok else 'FAILED'}" for k, ok in c["checks"].items())
        + "</td></tr>"
        for c in comp["checks"]
    )
    return (
        f"<h2>Rule compliance</h2><p>{comp['orders']} orders, {comp['traced']} traced, "
        f"{len(comp['violations'])} violation(s)</p><table id='compliance'>{rows}</table>"
    )


def write_all(report: dict[str, Any], out_dir: Path, stem: str = "report") -> dict[str, Path]:
    """``report.json``, ``report.txt``, ``report.png`` and ``report.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"{stem}.{k}" for k in ("json", "txt", "png", "html")}
    paths["json"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    paths["txt"].write_text(text(report))
    png = plot_png(report)
    paths["png"].write_bytes(png)
    paths["html"].write_text(html_page(report, png))
    return paths


COMPARED = (
    ("trades", "trades"),
    ("win rate %", "win_rate_pct"),
    ("P&L total", "pnl_total"),
    ("P&L %", "pnl_total_pct"),
    ("fees paid", "fees_paid"),
    ("max drawdown %", "max_drawdown_pct"),
    ("Sharpe", "sharpe"),
    ("Sortino", "sortino"),
    ("exposure avg %", "exposure_avg_pct"),
    ("signals", "signals"),
)


def compare_text(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two reports' headline figures side by side, with B − A."""
    fa, fb = a["figures"], b["figures"]
    lines = [f"{'':<18} {'A':>14} {'B':>14} {'B - A':>12}"]
    for label, key in COMPARED:
        va, vb = fa.get(key), fb.get(key)
        diff = vb - va if isinstance(va, int | float) and isinstance(vb, int | float) else None
        lines.append(f"{label:<18} {_num(va):>14} {_num(vb):>14} {_num(diff):>12}")
    lines.append(
        f"{'breaker trips':<18} {len(fa['breaker_trips']):>14} {len(fb['breaker_trips']):>14}"
    )
    changed = {
        k: (a["settings"].get(k), b["settings"].get(k))
        for k in sorted(set(a["settings"]) | set(b["settings"]))
        if a["settings"].get(k) != b["settings"].get(k)
    }
    lines += [f"A: {a['title']}", f"B: {b['title']}"]
    lines += [f"setting {k}: {va} → {vb}" for k, (va, vb) in changed.items()]
    return "\n".join(lines) + "\n"
