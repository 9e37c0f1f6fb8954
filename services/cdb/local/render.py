"""Plain-text views of a ``Snapshot``: the live table of ``cdb up``, its one-line form for logs,
and the report of ``cdb status``. Pure functions of their inputs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from cdb.local.plan import DISPLAY_ORDER
from cdb.local.snapshot import ServiceView, Snapshot


def _clock(ts: int | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts)) if ts else "--:--:--"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def breaker_text(breaker: dict[str, str]) -> str:
    if not breaker:
        return "unknown (risk has not reported)"
    if breaker.get("engaged") != "1":
        return "off"
    kinds = [k for k in ("kill_switch", "drawdown", "manual") if breaker.get(k) == "1"]
    reason = breaker.get("reason") or ""
    return f"ENGAGED ({', '.join(kinds) or 'engaged'}){': ' + reason if reason else ''}"


def service_state(view: ServiceView, exited: int | str | None = None) -> str:
    """The state column: ``exited`` is an exit code, or ``cdb up``'s own text for a child
    that is down (``EXITED (2), restart in 4 s``, ``finished``)."""
    if isinstance(exited, str):
        return exited
    if exited is not None:
        return f"EXITED (code {exited})"
    if view.state == "ok":
        return "ok"
    if view.problems:
        return f"{view.state}: {'; '.join(view.problems)[:70]}"
    return view.state


def service_detail(view: ServiceView) -> str:
    """One short fact per service from its /status."""
    s = view.status
    if not s:
        return ""
    if view.name == "feed":
        published = s.get("published", 0)
        if isinstance(published, dict):
            published = sum(v for v in published.values() if isinstance(v, int))
        return f"published {published} this run"
    if view.name == "signal":
        return f"signals {s.get('signals_generated', 0)} this run"
    if view.name == "risk":
        positions = s.get("positions") or {}
        return f"{len(positions)} open, exposure {_pct(s.get('exposure_pct'))}"
    if view.name == "execution":
        return f"{s.get('mode', '?')}{', FAIL-CLOSED' if s.get('fail_closed') else ''}"
    if view.name == "persistence":
        return f"rows {sum((s.get('rows_written') or {}).values())} this run"
    if view.name == "notifier":
        return f"alerts {s.get('alerts_logged', 0)}, push {s.get('webpush', '?')}"
    if view.name == "dashboard":
        return "buttons on (DASHBOARD_TOKEN)" if s.get("writable") else "read-only"
    if view.name == "advisor":
        return "shadow mode (ml_signals only)"
    return ""


def rows_of(ports: Mapping[str, int | None]) -> tuple[str, ...]:
    """The services shown, in display order: the pipeline's, then the advisor if it runs."""
    return DISPLAY_ORDER + (("advisor",) if "advisor" in ports else ())


def links(ports: Mapping[str, int | None]) -> list[str]:
    """Where to look: the dashboard's URL and the advisor's /metrics (when it runs)."""
    out = []
    if ports.get("dashboard"):
        out.append(f"dashboard  http://127.0.0.1:{ports['dashboard']}/")
    if ports.get("advisor"):
        out.append(f"advisor    http://127.0.0.1:{ports['advisor']}/metrics")
    return out


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters (the full problem is in ``cdb status``)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _pct(value: object) -> str:
    return f"{value:.1f} %" if isinstance(value, int | float) else "?"


def equity_text(snap: Snapshot, quote: str) -> str:
    risk = snap.services.get("risk")
    equity = risk.status.get("equity") if risk else None
    if not isinstance(equity, int | float):
        return "?"
    drawdown = risk.status.get("drawdown_pct")
    extra = f" (drawdown {drawdown:.2f} %)" if isinstance(drawdown, int | float) else ""
    return f"{equity:,.2f} {quote}{extra}"


def headline(snap: Snapshot, quote: str) -> str:
    """Counts from PostgreSQL (every run on this data, unlike the services' "this run"
    figures), equity, breaker."""
    c = snap.counts
    return (
        f"signals {c.get('signals', '?')} | orders {c.get('orders', '?')} | "
        f"fills {c.get('fills', '?')} (since start of data) | equity {equity_text(snap, quote)} | "
        f"breaker {breaker_text(snap.breaker)}"
    )


def restarts_text(restarts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(restarts.items()))


def line(
    snap: Snapshot,
    elapsed: float,
    exited: Mapping[str, int | str],
    quote: str,
    restarts: Mapping[str, int] | None = None,
) -> str:
    """One line per refresh when the output is not a terminal (logs, CI, tests)."""
    ok = sum(1 for v in snap.services.values() if v.state == "ok")
    finished = sorted(n for n, text in exited.items() if text == "finished")
    down = sorted(n for n in exited if n not in finished)
    gone = (f" | down: {', '.join(down)}" if down else "") + (
        f" | finished: {', '.join(finished)}" if finished else ""
    )
    again = f" | restarts: {restarts_text(restarts)}" if restarts else ""
    return (
        f"[{_duration(elapsed)}] {headline(snap, quote)} | services {ok}/{len(snap.services)} ok"
        f"{gone}{again}"
    )


def _rows(title: str, rows: Iterable[str], empty: str = "(none yet)") -> list[str]:
    rows = list(rows)
    return [title, *(f"  {r}" for r in rows)] if rows else [title, f"  {empty}"]


def latest_lines(snap: Snapshot) -> list[str]:
    """The latest signals, orders and risk events; ``unknown`` when PostgreSQL did not answer."""
    if snap.database_error:
        unknown = "unknown (PostgreSQL unreachable)"
        titles = ("latest signals", "latest orders", "latest risk events")
        return [line for t in titles for line in _rows(t, [], unknown)]
    out: list[str] = []
    out += _rows(
        "latest signals",
        (
            f"{_clock(ts)}  {sym:<10} {side:<4} conf {conf:.2f}  {reason}"
            for ts, sym, side, conf, reason in snap.latest.get("signals", [])
        ),
    )
    out += _rows(
        "latest orders",
        (
            f"{_clock(ts)}  {cid:<24} {sym:<10} {side:<4} {qty:.6g} {status}"
            + (f" @ {price:.6g}" if price else "")
            for ts, cid, sym, side, qty, status, price in snap.latest.get("orders", [])
        ),
    )
    out += _rows(
        "latest risk events",
        (
            f"{_clock(ts)}  {sev:<8} {decision:<8} {rule:<10} {desc}"
            for ts, sev, decision, rule, desc in snap.latest.get("risk_events", [])
        ),
    )
    return out


def table(
    snap: Snapshot,
    ports: dict[str, int | None],
    elapsed: float,
    exited: Mapping[str, int | str],
    quote: str,
    where: str,
    live: bool = True,
    restarts: Mapping[str, int] | None = None,
    feed: str = "synthetic",
) -> str:
    """The live summary of ``cdb up``, redrawn in place on a terminal (``live``)."""
    hint = " · Ctrl-C stops" if live else " · stopped"
    market = {"live": "live prices", "replay": "replayed prices"}.get(feed, "synthetic market")
    out = [f"cdb up · {_duration(elapsed)} · paper trading on {market} · {where}{hint}", ""]
    out.append(f"{'service':<12} {'port':>5}  {'state':<26} detail")
    for name in rows_of(ports):
        view = snap.services.get(name, ServiceView(name, ports.get(name)))
        state = _fit(service_state(view, exited.get(name)), 26)
        out.append(f"{name:<12} {ports.get(name) or '':>5}  {state:<26} {service_detail(view)}")
    out += ["", *links(ports), "", headline(snap, quote)]
    if restarts:
        out.append(f"restarts: {restarts_text(restarts)} (services that died and were restarted)")
    if snap.database_error:
        out.append(f"PostgreSQL: {snap.database_error}")
    fills = snap.latest.get("fills", [])
    if fills:
        ts, sym, side, qty, price, pnl = fills[0]
        out.append(f"last fill: {_clock(ts)} {sym} {side} {qty:.6g} @ {price:.6g} (pnl {pnl:+.2f})")
    signals = snap.latest.get("signals", [])
    if signals:
        ts, sym, side, conf, reason = signals[0]
        out.append(f"last signal: {_clock(ts)} {sym} {side} conf {conf:.2f} – {reason}")
    return "\n".join(out)


def status_report(snap: Snapshot, ports: dict[str, int | None], quote: str) -> str:
    """What ``cdb status`` prints."""
    out = [f"{'service':<12} {'port':>5}  state"]
    for name in rows_of(ports):
        view = snap.services.get(name, ServiceView(name, ports.get(name)))
        detail = service_detail(view)
        out.append(
            f"{name:<12} {ports.get(name) or '':>5}  {service_state(view)}"
            + (f"  ({detail})" if detail else "")
        )
    out += ["", *links(ports), "", headline(snap, quote)]
    if snap.database_error:
        out.append(f"PostgreSQL unreachable: {snap.database_error}")
    if snap.redis_error:
        out.append(f"Redis unreachable: {snap.redis_error}")
    out.append("")
    out += latest_lines(snap)
    return "\n".join(out)
