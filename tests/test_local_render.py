"""What ``cdb up``'s redrawn summary and ``cdb status`` show: pure functions of a snapshot."""

from __future__ import annotations

from cdb.local import plan, render
from cdb.local.snapshot import ServiceView, Snapshot

PORTS = plan.ports_for(18000)


def test_the_redrawn_table_keeps_the_dashboard_url_and_the_advisor():
    text = render.table(Snapshot(), dict(PORTS), 5, {}, "USDT", "data /tmp/x")
    assert "dashboard  http://127.0.0.1:18006/" in text
    assert "advisor" not in text  # not started: no row, no URL

    with_advisor = {**PORTS, "advisor": 18123}
    snap = Snapshot(
        services={"advisor": ServiceView("advisor", 18123, state="ok", status={"a": 1})}
    )
    text = render.table(snap, with_advisor, 5, {}, "USDT", "data /tmp/x")
    assert "advisor    http://127.0.0.1:18123/metrics" in text
    row = next(line for line in text.splitlines() if line.startswith("advisor "))
    assert "18123" in row and " ok " in row and "shadow mode" in row


def test_cdb_status_shows_the_dashboard_url():
    text = render.status_report(Snapshot(), dict(PORTS), "USDT")
    assert "dashboard  http://127.0.0.1:18006/" in text


def test_counts_say_which_span_they_cover():
    snap = Snapshot(
        services={
            "signal": ServiceView("signal", 18001, "ok", status={"signals_generated": 2}),
            "feed": ServiceView("feed", 18000, "ok", status={"published": 9}),
        },
        counts={"signals": 7, "orders": 5, "fills": 5},
    )
    text = render.table(snap, dict(PORTS), 5, {}, "USDT", "data /tmp/x")
    assert "fills 5 (since start of data)" in text
    assert "signals 2 this run" in text and "published 9 this run" in text


def test_an_unreachable_database_is_unknown_not_empty():
    snap = Snapshot(database_error="connection refused")
    text = render.status_report(snap, dict(PORTS), "USDT")
    assert "(none yet)" not in text
    assert text.count("unknown (PostgreSQL unreachable)") == 3
    assert "(none yet)" in render.status_report(Snapshot(), dict(PORTS), "USDT")


def test_kept_positions_from_another_feed_are_warned_about():
    assert plan.feed_change_warning("synthetic", "synthetic", ["BTC_USDT"]) is None
    assert plan.feed_change_warning("live", "synthetic", []) is None
    assert plan.feed_change_warning(None, "live", ["BTC_USDT"]) is None  # first run
    text = plan.feed_change_warning("synthetic", "live", ["BTC_USDT"])
    assert text.startswith("warning: 1 open position (BTC_USDT) from the previous run on --feed")
    assert "--fresh" in text
