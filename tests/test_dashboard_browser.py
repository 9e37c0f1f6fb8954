"""The dashboard in a real browser against a real pipeline (every service, Redis, PostgreSQL).

What a person does: opens the page (no console error; positions, orders and charts show
data and update without a reload), follows an order to its explanation (signal, rule,
every check with its limit, fills and fees), signs in with the token and engages the
breaker with a typed reason and a confirmation (the risk manager confirms it and the next
qualifying signal is halted in ``risk_events``), and subscribes to pushes. What an
attacker does: POSTs without the token, with a wrong one, without the CSRF token, or to
a dashboard with no token at all. The figures are compared with SQL over the same data.

``CDB_SCREENSHOT_DIR=docs/images`` writes the screenshots docs/dashboard.md shows.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest
from browser import chromium, console_errors
from helpers import ServiceProcess, wait_until
from pipeline import Pipeline
from py_vapid import Vapid02

from cdb.bus import Bus
from cdb.events import Signal, now
from cdb.localservers import PostgresServer, RedisServer
from cdb.notifier.vapid import b64url, public_key_b64
from cdb.settings import PostgresSettings

TOKEN = "dashboard-token-0123456789"
SHOTS = os.environ.get("CDB_SCREENSHOT_DIR")
#: Signals the breaker halted in one test, explained in the next.
HALTED: list[str] = []
_ids = itertools.count()


def _vapid() -> dict[str, str]:
    vapid = Vapid02()
    vapid.generate_keys()
    raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    return {
        "WEBPUSH_VAPID_PUBLIC_KEY": public_key_b64(vapid),
        "WEBPUSH_VAPID_PRIVATE_KEY": b64url(raw),
        "WEBPUSH_CONTACT": "mailto:ops@example.com",
    }


def latest_price(pipe: Pipeline, symbol: str) -> float:
    for _, fields in pipe.redis().xrevrange("market_data", count=500):
        data = json.loads(fields[b"data"])
        if data.get("symbol") == symbol:
            return float(data["price"])
    raise AssertionError(f"no price for {symbol}")


def inject_signal(pipe: Pipeline, symbol: str = "BTC_USDT", side: str = "BUY") -> str:
    """A qualifying momentum signal (5 %, volume 1e6), as the signal engine would publish."""
    signal_id = f"browser-{next(_ids)}-{int(time.time() * 1000)}"
    bus = Bus(pipe.redis(), service="browser-test")
    bus.publish(
        Signal(
            signal_id=signal_id,
            symbol=symbol,
            side=side,
            confidence=0.5,
            price=latest_price(pipe, symbol),
            pct_change=5.0,
            volume=1e6,
            reason="Momentum: +5.0% (threshold 3.0%)",
            timestamp=now(),
        )
    )
    bus.client.close()
    return signal_id


def request(port: int, path: str, method: str = "GET", body=None, headers=None):
    """(status, JSON body) of a request to the dashboard, without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


@pytest.fixture(scope="module")
def pipe():
    root = Path(tempfile.mkdtemp(prefix="cdb-dashboard-"))
    root.chmod(0o755)
    redis_server = RedisServer(root / "redis").start()
    pg_server = PostgresServer(root / "pg")
    pg_server.init()
    (root / "logs").mkdir()
    env = {"DASHBOARD_TOKEN": TOKEN, "NOTIFIER_API_TOKEN": "notifier-token-0123456789", **_vapid()}
    pipeline = Pipeline(redis_server, pg_server, root / "logs", extra_env=env)
    try:
        pipeline.start()
        pipeline.extra_env["NOTIFIER_URL"] = (
            f"http://127.0.0.1:{pipeline.services['notifier'].port}"
        )
        pipeline.services["dashboard"].stop()
        pipeline.start_service("dashboard")
        wait_until(lambda: pipeline.redis().xlen("market_data") > 30, timeout=60)
        for symbol in ("BTC_USDT", "ETH_USDT"):
            inject_signal(pipeline, symbol)
        wait_until(
            lambda: pipeline.sql("SELECT count(*) FROM trades")[0][0] >= 2,
            timeout=60,
            message="two fills",
        )
        yield pipeline
    finally:
        pipeline.stop()
        redis_server.stop()
        pg_server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def port(pipe: Pipeline) -> int:
    return pipe.services["dashboard"].port


def open_page(driver, pipe: Pipeline, path: str = "/") -> None:
    driver.get(f"http://127.0.0.1:{port(pipe)}{path}")


def rows(driver, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    table = driver.find_element(By.ID, table_id)
    out = []
    for tr in table.find_elements(By.TAG_NAME, "tr"):
        cells = [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        if cells and cells != ["none yet"]:
            out.append(cells)
    return out


# -- the cases ----------------------------------------------------------------------------------


def test_overview_loads_without_console_errors_and_shows_data(pipe, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, pipe)
    wait_until(lambda: rows(browser, "positions"), timeout=20, message="positions shown")
    wait_until(lambda: rows(browser, "orders"), timeout=20, message="orders shown")
    canvases = browser.find_elements(By.CSS_SELECTOR, "#equity-chart canvas, #pnl-chart canvas")
    assert len(canvases) == 2, "both charts drawn"
    assert "released" in browser.find_element(By.ID, "breaker-state").text
    services = {r[0]: r[1] for r in rows(browser, "services")}
    assert services.get("risk") == "ok" and services.get("execution") == "ok", services
    assert {r[0] for r in rows(browser, "markets")} >= {"BTC_USDT", "ETH_USDT"}
    # updated live: a new order appears without a reload
    before = {r[1] for r in rows(browser, "orders")}
    inject_signal(pipe, "SOL_USDT")
    wait_until(
        lambda: {r[1] for r in rows(browser, "orders")} - before,
        timeout=30,
        message="a new order shown without reloading",
    )
    time.sleep(2.5)  # one more refresh, then a clean console
    shot(browser, "dashboard-overview.png")
    assert console_errors(browser) == []


def test_charts_use_utc_24_hours_and_draw_a_loss_red(pipe, browser):
    """As the tables: times in UTC, 24-hour; a day's loss is a red bar, a gain a green one."""
    from selenium.webdriver.common.by import By

    open_page(browser, pipe)
    wait_until(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pnl-chart .u-legend .u-series")) == 3,
        timeout=20,
        message="the P&L chart with a gain and a loss series",
    )
    # 2023-11-14 22:13:20 UTC: "22:13" whatever the browser's zone or 12-hour locale
    got = browser.execute_script(
        "const C = window.cdbCharts; return [C.timeLabels([1700000000, 1700003600]),"
        " C.timeLabels([1700000000, 1700000000 + 3 * 86400]), C.timeValue(1700000000),"
        " C.splitBySign([5, -3, 0])];"
    )
    assert got == [
        ["22:13", "23:13"],
        ["11-14", "11-17"],
        "2023-11-14 22:13:20 UTC",
        [[5, None, 0], [None, -3, None]],
    ]
    legend = browser.find_elements(By.CSS_SELECTOR, "#pnl-chart .u-legend .u-series")
    assert "realized loss" in legend[2].text and "realized gain" in legend[1].text
    marker = legend[2].find_element(By.CSS_SELECTOR, ".u-marker")
    assert marker.value_of_css_property("border-color") == "rgb(197, 34, 31)"  # red
    assert console_errors(browser) == []


def test_the_page_shows_what_sql_says(pipe, browser):
    """What a person reads on the page (cash, positions) is what the tables hold."""
    open_page(browser, pipe)

    def agree() -> bool:
        cash = pipe.sql("SELECT free FROM balances WHERE asset = 'USDT'")[0][0]
        held = pipe.sql(
            "SELECT symbol, quantity, avg_price, stop_loss FROM positions WHERE quantity > 0"
        )
        account = dict(r[:2] for r in rows(browser, "account"))
        shown = {r[0]: r for r in rows(browser, "positions")}
        if account.get("cash") != f"{cash:,.2f}".rstrip("0").rstrip("."):
            return False
        return set(shown) == {h[0] for h in held} and all(
            float(shown[sym][1].replace(",", "")) == pytest.approx(qty, rel=1e-7)
            and float(shown[sym][2].replace(",", "")) == pytest.approx(entry, rel=1e-6)
            and float(shown[sym][3].replace(",", "")) == pytest.approx(stop, rel=1e-6)
            for sym, qty, entry, stop in held
        )

    wait_until(agree, timeout=20, interval=0.5, message="page and SQL agree")


STILL = (
    "SELECT (SELECT count(*) FROM trades), (SELECT coalesce(max(id), 0) FROM trades),"
    " (SELECT coalesce(max(id), 0) FROM orders), (SELECT max(updated_at) FROM orders)"
)


def _sql_snapshot(pipe, queries: dict[str, str]) -> dict[str, list[tuple]]:
    """Every query in one REPEATABLE READ transaction: figures from one moment of the
    database (separate statements raced a stop-loss fill landing between two of them)."""
    conn = psycopg2.connect(PostgresSettings(**pipe.pg_server.env()).postgres_dsn())
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn, conn.cursor() as cur:
            out = {}
            for name, query in queries.items():
                cur.execute(query)
                out[name] = cur.fetchall()
        return out
    finally:
        conn.close()


def test_figures_agree_with_sql(pipe):
    """Read SQL, the API, then every figure in one snapshot; compare when nothing was
    filled or ordered between the first read and the snapshot."""
    queries = {
        "still": STILL,
        "cash": "SELECT free FROM balances WHERE asset = 'USDT'",
        "positions": "SELECT symbol, quantity FROM positions WHERE quantity > 0",
        "realized": "SELECT coalesce(sum(realized_pnl), 0) FROM trades",
        "at_cost": "SELECT coalesce(sum(quantity * avg_price), 0) FROM positions",
        "daily": "SELECT ts / 86400 * 86400, sum(realized_pnl), count(*) FROM trades"
        " GROUP BY 1 ORDER BY 1",
        "orders": "SELECT client_id FROM orders ORDER BY id DESC LIMIT 20",
    }
    for _ in range(60):
        before = pipe.sql(STILL)
        body = request(port(pipe), "/api/overview")[1]
        snap = _sql_snapshot(pipe, queries)
        if before == snap["still"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the trades and orders tables never stood still for one read")
    acct = body["account"]
    cash = snap["cash"][0][0]
    assert acct["cash"] == pytest.approx(cash, rel=1e-12)
    positions = dict(snap["positions"])
    shown = {p["symbol"]: p for p in body["positions"]}
    assert set(shown) == set(positions)
    for symbol, p in shown.items():
        assert p["quantity"] == pytest.approx(positions[symbol], rel=1e-12)
        assert p["unrealized_pnl"] == pytest.approx(p["quantity"] * (p["price"] - p["avg_price"]))
    value = sum(p["quantity"] * p["price"] for p in body["positions"])
    assert acct["equity"] == pytest.approx(cash + value, rel=1e-12)
    # starting cash + realised P&L (fees included) = cash + positions at cost
    realized = snap["realized"][0][0]
    at_cost = snap["at_cost"][0][0]
    assert acct["start_cash"] + realized == pytest.approx(cash + at_cost, rel=1e-9)
    curve = body["equity_curve"]
    assert curve[-2][1] == pytest.approx(acct["start_cash"] + realized, rel=1e-12)
    assert curve[-1][1] == pytest.approx(acct["equity"], rel=1e-12)
    daily = snap["daily"]
    assert [(d["day"], d["fills"]) for d in body["daily_pnl"]] == [(d, n) for d, _, n in daily]
    for shown_day, (_, pnl, _) in zip(body["daily_pnl"], daily, strict=True):
        assert shown_day["realized_pnl"] == pytest.approx(pnl, rel=1e-12)
    orders = [r[0] for r in snap["orders"]]
    assert [o["client_id"] for o in body["latest"]["orders"]] == orders
    state = pipe.sql("SELECT value FROM service_state WHERE service='risk' AND key='day_start'")
    assert acct["day_start_equity"] == pytest.approx(state[0][0]["equity"])


def test_explanation_of_a_filled_order_shows_rule_and_limits(pipe, browser):
    from selenium.webdriver.common.by import By

    cid, signal_id = pipe.sql(
        "SELECT client_id, signal_id FROM orders WHERE status = 'FILLED' AND side = 'BUY' "
        "ORDER BY id LIMIT 1"
    )[0]
    open_page(browser, pipe, f"/explain/{cid}")
    assert (
        browser.find_element(By.ID, "ex-rule").text
        == pipe.sql("SELECT rule FROM risk_events WHERE client_id = %s", (cid,))[0][0]
    )
    signal_reason = pipe.sql("SELECT reason FROM signals WHERE signal_id = %s", (signal_id,))[0][0]
    assert browser.find_element(By.ID, "ex-signal-reason").text == signal_reason
    checks = {
        tr.get_attribute("data-check"): [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#ex-checks tr[data-check]")
    }
    # the limits the pipeline runs with (the defaults): value / limit per check
    assert checks["drawdown"][3] == "5 %"
    assert checks["position_size"][3] == "10 %"
    assert checks["exposure"][3] == "50 %"
    assert checks["open_positions"][3] == "5"
    assert all(c[0] == "✓" for c in checks.values()), checks
    fills = pipe.sql("SELECT fee FROM trades WHERE client_id = %s", (cid,))
    fill_rows = browser.find_elements(By.CSS_SELECTOR, "#ex-fills tr")
    assert len(fill_rows) == 1 + len(fills) + 1  # header, fills, total
    assert float(browser.find_element(By.ID, "ex-fees").text) == pytest.approx(
        sum(f[0] for f in fills), rel=1e-5
    )
    shot(browser, "dashboard-explain.png")
    assert console_errors(browser) == []
    # the CLI twin prints the same explanation
    out = subprocess.run(
        [sys.executable, "-m", "cdb", "explain", cid, "--json", "--data-dir", "/nonexistent"],
        env={**os.environ, **pipe.pg_server.env()},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    api = request(port(pipe), f"/api/explain/{cid}")[1]
    assert json.loads(out.stdout) == api


def test_engaging_the_breaker_in_the_page_blocks_the_next_signal(pipe, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, pipe)
    browser.find_element(By.ID, "login-token").send_keys(TOKEN)
    browser.find_element(By.ID, "login").click()
    wait_until(lambda: browser.find_elements(By.ID, "engage-breaker"), message="signed in")
    browser.find_element(By.ID, "control-reason").send_keys("browser test: manual halt")
    browser.find_element(By.ID, "engage-breaker").click()
    wait_until(lambda: browser.find_element(By.ID, "confirm").is_displayed(), message="asked")
    assert "engage the breaker" in browser.find_element(By.ID, "confirm-text").text
    assert pipe.breaker()["engaged"] == "0", "nothing is sent before the confirmation"
    browser.find_element(By.ID, "confirm-yes").click()
    wait_until(
        lambda: (
            "confirmed by the risk manager" in browser.find_element(By.ID, "control-status").text
        ),
        timeout=30,
        message="the risk manager's confirmation shown",
    )
    state = pipe.breaker()
    assert state["engaged"] == "1" and state["manual"] == "1"
    assert state["reason"] == "browser test: manual halt"
    assert state["control_id"].startswith("dashboard-")
    wait_until(lambda: "ENGAGED" in browser.find_element(By.ID, "breaker-state").text)
    shot(browser, "dashboard-breaker.png")
    signal_id = inject_signal(pipe, "ETH_USDT")
    decision = wait_until(
        lambda: pipe.sql(
            "SELECT decision, rule, client_id FROM risk_events WHERE signal_id = %s", (signal_id,)
        ),
        timeout=30,
        message="the signal decided",
    )
    assert decision == [("halt", "manual_breaker", None)]
    HALTED.append(signal_id)
    assert pipe.sql("SELECT count(*) FROM orders WHERE signal_id = %s", (signal_id,)) == [(0,)]
    control = pipe.sql(
        "SELECT decision, context->>'source' FROM risk_events WHERE event_key = %s",
        (f"control:{state['control_id']}",),
    )
    assert control == [("engage_breaker", "dashboard")]
    # and released the same way
    reason = browser.find_element(By.ID, "control-reason")
    reason.clear()
    reason.send_keys("browser test: resume")
    browser.find_element(By.ID, "release").click()
    wait_until(lambda: browser.find_element(By.ID, "confirm").is_displayed())
    browser.find_element(By.ID, "confirm-yes").click()
    wait_until(lambda: pipe.breaker()["engaged"] == "0", timeout=30, message="released")
    assert console_errors(browser) == []


def test_a_halted_signal_is_explained_without_an_order(pipe, browser):
    from selenium.webdriver.common.by import By

    assert HALTED, "the breaker test ran first and halted a signal"
    signal_id = HALTED[0]
    open_page(browser, pipe, f"/explain/signal/{signal_id}")
    assert "got no order" in browser.find_element(By.TAG_NAME, "h2").text
    assert browser.find_element(By.ID, "ex-rule").text == "manual_breaker"
    decided = browser.find_elements(By.CSS_SELECTOR, "#ex-checks tr.decided")
    assert [tr.get_attribute("data-check") for tr in decided] == ["manual_breaker"]
    cells = [td.text for td in decided[0].find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "✗" and cells[2] == "engaged" and cells[3] == "off"
    assert browser.find_elements(By.ID, "ex-order") == []
    assert console_errors(browser) == []
    out = subprocess.run(
        [sys.executable, "-m", "cdb", "explain", "--signal", signal_id, "--data-dir", "/x"],
        env={**os.environ, **pipe.pg_server.env()},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "FAIL manual breaker" in out.stdout and "<- decided" in out.stdout


def test_state_changing_requests_without_the_token_are_refused(pipe, tmp_path):
    p = port(pipe)
    control_len = pipe.redis().xlen("control")
    body = {"verb": "engage", "reason": "attacker"}
    assert request(p, "/api/control", "POST", body)[0] == 401
    assert request(p, "/api/control", "POST", body, {"Authorization": "Bearer wrong"})[0] == 401
    confirm = {"confirm_id": "guess"}
    assert request(p, "/api/control/confirm", "POST", confirm)[0] == 401
    assert request(p, "/api/push/subscribe", "POST", {})[0] == 401
    # a signed-in session without the CSRF header (what a cross-site form would send)
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    login = urllib.request.Request(
        f"http://127.0.0.1:{p}/login", data=f"token={TOKEN}".encode(), method="POST"
    )
    opener.open(login, timeout=10)
    forged = urllib.request.Request(
        f"http://127.0.0.1:{p}/api/control",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(forged, timeout=10)
    assert refused.value.code == 403
    # a dashboard without a token is read-only: every change is refused
    bare = {k: v for k, v in pipe.env.items() if k != "DASHBOARD_TOKEN"}
    readonly = ServiceProcess("dashboard", bare, tmp_path).start(timeout=30)
    try:
        assert request(readonly.port, "/api/overview")[0] == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert request(readonly.port, "/api/control", "POST", body, bearer)[0] == 403
        assert request(readonly.port, "/api/push/subscribe", "POST", {}, bearer)[0] == 403
    finally:
        readonly.stop()
    assert pipe.redis().xlen("control") == control_len, "no control was sent"
    assert pipe.breaker()["engaged"] == "0"
    # guessing the token: sign-ins are limited to 20 a minute (all clients together)
    codes = []
    for guess in range(25):
        wrong = urllib.request.Request(
            f"http://127.0.0.1:{p}/login", data=f"token=guess-{guess}".encode(), method="POST"
        )
        try:
            codes.append(urllib.request.urlopen(wrong, timeout=10).status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    assert set(codes) == {401, 429} and codes[-1] == 429, codes


def test_push_page_registers_the_worker_and_subscribes_through_the_notifier(pipe, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, pipe, "/push")
    wait_until(
        lambda: browser.find_element(By.ID, "sw-state").text == "registered",
        timeout=20,
        message="service worker registered",
    )
    key = browser.find_element(By.ID, "vapid-key").text
    assert key == pipe.env["WEBPUSH_VAPID_PUBLIC_KEY"]
    shot(browser, "dashboard-push.png")
    assert console_errors(browser) == []
    # the browser's push service is on the internet; its answer is what the page forwards
    subscription = {
        "endpoint": "https://push.example.invalid/sub/browser-test",
        "keys": {"p256dh": key, "auth": "c2VjcmV0c2VjcmV0MTIzNA"},
    }
    status, _ = request(
        port(pipe),
        "/api/push/subscribe",
        "POST",
        subscription,
        {"Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 201
    stored = pipe.sql("SELECT endpoint FROM webpush_subscriptions")
    assert stored == [(subscription["endpoint"],)]
    # signing out (a form carrying the session's CSRF token) ends the session
    browser.find_element(By.ID, "logout").click()
    wait_until(lambda: browser.find_elements(By.ID, "login-token"), message="signed out")
    assert browser.find_elements(By.ID, "subscribe") == []
    assert console_errors(browser) == []


def test_cli_twin_engages_the_kill_switch_and_releases(pipe):
    """``cdb breaker`` takes the same path: confirmed by the risk manager, signals halted."""
    env = {**os.environ, **pipe.redis_server.env()}

    def cdb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cdb", "breaker", *args, "--data-dir", "/nonexistent"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = cdb("engage")
    assert refused.returncode == 2 and "reason" in refused.stderr
    engaged = cdb("engage", "--kill-switch", "--reason", "cli test", "--json")
    assert engaged.returncode == 0, engaged.stderr
    out = json.loads(engaged.stdout)
    assert out["confirmed"] and out["breaker"]["kill_switch"] and out["action"] == "kill_switch"
    signal_id = inject_signal(pipe, "BTC_USDT")
    decision = wait_until(
        lambda: pipe.sql(
            "SELECT decision, rule FROM risk_events WHERE signal_id = %s", (signal_id,)
        ),
        timeout=30,
    )
    assert decision == [("halt", "kill_switch")]
    status = cdb("status")
    assert status.returncode == 0 and "ENGAGED by kill switch – cli test" in status.stdout
    released = cdb("release", "--kill-switch", "--reason", "cli test over")
    assert released.returncode == 0, released.stdout + released.stderr
    assert pipe.breaker()["engaged"] == "0"
