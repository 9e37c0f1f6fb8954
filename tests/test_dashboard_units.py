"""The pure parts of the dashboard: recorded risk checks agree with the rules; explanations.

The property test drives the risk rules' own generated worlds through ``rules.evaluate``
and ``checks.record``: whatever decided must show as a failed check (or, for an approval,
every check passed), so an explanation can never contradict the decision it explains.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from test_risk_rules import healthy_worlds, worlds

from cdb.dashboard import explain, figures
from cdb.risk import checks, rules


@settings(max_examples=600, deadline=None)
@given(st.one_of(worlds(), healthy_worlds()))
def test_recorded_checks_agree_with_the_decision(world):
    limits, snap, sig = world
    decision = rules.evaluate(sig, snap, limits)
    recorded = checks.record(sig, snap, limits, decision)
    json.dumps(recorded)  # storable as JSONB as it is
    by_name = {c["check"]: c for c in recorded}
    assert len(by_name) == len(recorded), "one entry per check"
    decided = explain.decided_check(decision.kind, decision.rule)
    if decision.kind in ("reject", "halt", "pause") and decision.rule != "quote_asset":
        assert decided in by_name, (decision, recorded)
        assert by_name[decided]["ok"] is False, (decision, by_name[decided])
    if decision.kind == "approve":
        assert all(c["ok"] for c in recorded), (decision, recorded)
    if decision.kind == "clip":
        assert decided in by_name and by_name[decided]["ok"], (decision, recorded)
        for name in ("position_size", "exposure_after", "cash"):
            assert by_name[name]["ok"], (decision, by_name[name])


def test_explanation_marks_the_deciding_check_and_renders_text():
    ctx_checks = [
        {
            "check": "kill_switch",
            "value": "off",
            "limit": "off",
            "unit": "",
            "ok": True,
            "text": "",
        },
        {"check": "exposure", "value": 52.0, "limit": 50.0, "unit": "%", "ok": False, "text": ""},
    ]
    decision = {
        "ts": 1_800_000_000,
        "decision": "reject",
        "rule": "exposure",
        "severity": "WARNING",
        "description": "exposure 52 % ≥ limit 50 % – signal s1 rejected",
        "signal_id": "s1",
        "context": {"checks": ctx_checks},
    }
    signal = {
        "signal_id": "s1",
        "ts": 1_800_000_000,
        "symbol": "BTC_USDT",
        "side": "BUY",
        "confidence": 0.4,
        "price": 100.0,
        "reason": "Momentum: +4.0%",
        "strategy": "momentum",
    }
    expl = explain.build("cid1", signal, decision, None, None, [])
    assert expl["found"] and [c["decided"] for c in expl["checks"]] == [False, True]
    text = explain.to_text(expl)
    assert "FAIL exposure before" in text and "52 %" in text and "50 %" in text
    assert "<- decided" in text and "reason: Momentum: +4.0%" in text
    missing = explain.build("nope", None, None, None, None, [])
    assert not missing["found"] and "no order" in missing["summary"]


def test_a_stop_loss_exit_is_explained_by_its_price_and_stop():
    """Exits carry checks too: the price seen against the position's stop."""
    ctx = {"checks": checks.exit_checks("stop_loss", 97.5, 98.0, False, "USDT")}
    decision = {
        "ts": 1_800_000_000,
        "decision": "exit",
        "rule": "stop_loss",
        "severity": "WARNING",
        "description": "stop loss hit: BTC_USDT at 97.5 ≤ stop 98",
        "signal_id": None,
        "context": json.loads(json.dumps(ctx)),  # as stored: JSON
    }
    expl = explain.build("exit-1", None, decision, None, None, [])
    by_name = {c["name"]: c for c in expl["checks"]}
    stop = by_name["stop loss"]
    assert stop["decided"] and not stop["ok"]
    assert (stop["value"], stop["limit"]) == (97.5, 98.0)
    assert by_name["daily drawdown"]["ok"] and not by_name["daily drawdown"]["decided"]
    text = explain.to_text(expl)
    assert "no checks recorded" not in text and "<- decided" in text and "97.5" in text
    tripped = checks.exit_checks("drawdown", 120.0, 98.0, True, "USDT")
    assert [c["ok"] for c in tripped] == [False, True]


def test_equity_identity_and_curve():
    rows = [
        {"symbol": "BTC_USDT", "quantity": 2.0, "avg_price": 100.0, "stop_loss": 98.0},
        {"symbol": "ETH_USDT", "quantity": 1.0, "avg_price": 50.0, "stop_loss": 49.0},
    ]
    pos = figures.positions(rows, {"BTC_USDT": {"price": 110.0, "ts": 1}})
    assert pos[0]["unrealized_pnl"] == 20.0 and pos[1]["priced"] is False
    assert pos[1]["unrealized_pnl"] == 0.0  # unknown price: valued at entry, not at zero
    acct = figures.account(1000.0, pos, 1200.0, 5.0)
    assert acct["equity"] == 1000.0 + 220.0 + 50.0
    assert acct["drawdown_pct"] == 0.0
    acct = figures.account(900.0, pos, 1300.0, 5.0)
    assert round(acct["drawdown_pct"], 6) == round((1300 - 1170) / 1300 * 100, 6)
    curve = figures.equity_curve(1000.0, [(10, -1.0), (20, 5.0)], 30, 1010.0)
    assert curve == [[9, 1000.0], [10, 999.0], [20, 1005.0], [30, 1010.0]]
    assert figures.equity_curve(1000.0, [], 30, 1000.0) == [[30, 1000.0]]


def test_breaker_status_line_says_never_engaged_as_the_dashboard_does():
    from cdb.dashboard.cli_breaker import describe

    clear = {"engaged": False, "manual": False, "kill_switch": False, "drawdown": False}
    assert describe({**clear, "reason": "", "updated_at": None}) == (
        "breaker: released – never engaged (as reported by the risk manager)"
    )
    engaged = {**clear, "engaged": True, "manual": True, "reason": "smoke test"}
    assert describe({**engaged, "updated_at": 1_795_000_000}) == (
        "breaker: ENGAGED by manual – smoke test (risk manager, 2026-11-18 11:06:40 UTC)"
    )
    assert describe({**engaged, "updated_at": None}).endswith("(risk manager, unknown)")
    assert describe(None).startswith("breaker: not reported")
