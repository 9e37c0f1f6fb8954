"""``cdb up`` and ``cdb status`` as real commands: private servers, named servers, a service that
dies, Ctrl-C, and the messages a person gets when something is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from helpers import wait_until

from cdb.local import children, plan, render, state
from cdb.local.snapshot import ServiceView, Snapshot
from cdb.localservers import PostgresServer
from cdb.settings import PostgresSettings


def tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # as root, PostgreSQL runs as 'postgres', which must enter it
    return path


def base_env(**extra: str) -> dict[str, str]:
    """This environment without any server or port the developer may have set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "POSTGRES_"))}
    return {**env, **extra}


class Command:
    """A ``cdb`` command running in the background, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], out: Path) -> None:
        self.out = out
        with out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdb", *args], env=env, stdout=f, stderr=subprocess.STDOUT
            )

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cdb(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdb", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def up_dir() -> Iterator[Path]:
    path = tempdir("cdb-up-")
    yield path / "data"


# -- pure parts ---------------------------------------------------------------------------------


def test_children_always_paper_trade_without_exchange_keys():
    base = {
        "MEXC_API_KEY": "k3y-k3y",
        "MEXC_API_SECRET": "s3cr3t",
        "EXCHANGE_API_KEY": "k3y-2",
        "EXCHANGE_API_SECRET": "s3cr3t-2",
        "TRADING_MODE": "live",
        "SIGNAL_COOLDOWN_S": "5",
        "PATH": "/bin",
    }
    env = plan.child_env(base, "execution", 8003, {"REDIS_HOST": "127.0.0.1"}, "synthetic")
    assert env["TRADING_MODE"] == "paper"
    assert not {k for k in env if k.endswith(("API_KEY", "API_SECRET"))}
    assert env["SIGNAL_COOLDOWN_S"] == "5"  # the developer's value wins over the local default
    assert env["FEED_SYNTHETIC_PERIOD_S"] == "1"
    assert env["HTTP_PORT"] == "8003" and env["HTTP_HOST"] == "127.0.0.1"
    assert env["REDIS_HOST"] == "127.0.0.1" and env["FEED_SOURCE"] == "synthetic"
    assert env["CDB_CONSUMER_NAME"] == "execution-local"


def test_a_private_server_replaces_every_setting_of_its_kind_from_the_shell():
    base = {"REDIS_PASSWORD": "stray", "REDIS_USERNAME": "me", "REDIS_TLS": "true", "X": "1"}
    private = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6390", "REDIS_DB": "0"}
    env = plan.child_env(base, "risk", 8002, private, "synthetic")
    assert {k: v for k, v in env.items() if k.startswith("REDIS_")} == private
    assert env["X"] == "1"
    # a server the environment names keeps its settings (Servers copies them over)
    named = {"REDIS_HOST": "redis.example", "REDIS_PASSWORD": "given", "REDIS_TLS": "true"}
    env = plan.child_env(named, "risk", 8002, named, "synthetic")
    assert env["REDIS_PASSWORD"] == "given" and env["REDIS_TLS"] == "true"


def test_replay_trades_from_now_on_and_stays_up_at_its_end():
    env = plan.child_env({}, "feed", 8000, {}, "replay")
    assert env["FEED_SOURCE"] == "replay"
    assert env["FEED_REPLAY_SHIFT_TO_NOW"] == "true"  # not rejected as stale
    assert env["FEED_REPLAY_AT_END"] == "idle"  # a finished replay is no dead service
    assert env["FEED_REPLAY_SPEED"] == "60"
    assert (
        plan.child_env({"FEED_REPLAY_SPEED": "5"}, "feed", 1, {}, "replay", speed=2.5)[
            "FEED_REPLAY_SPEED"
        ]
        == "2.5"
    )
    live = plan.child_env({}, "feed", 8000, {}, "live")
    assert live["FEED_SOURCE"] == "stream" and live["TRADING_MODE"] == "paper"
    polled = plan.child_env({"FEED_SOURCE": "live"}, "feed", 8000, {}, "live")
    assert polled["FEED_SOURCE"] == "live"  # the REST fallback, asked for by name
    assert plan.child_env({"FEED_SOURCE": "live"}, "feed", 1, {}, "replay")["FEED_SOURCE"] == (
        "replay"
    )
    assert "SIGNAL_COOLDOWN_S" not in live  # real time: the services' own defaults


def test_a_feed_faster_than_the_clock_raises_every_readers_event_lead():
    """Its stamps run ahead of the clock; readers would dead-letter them after 60 s."""
    assert plan.child_env({}, "risk", 1, {}, "replay")["EVENT_MAX_LEAD_S"] == "604800"
    fast = {"FEED_SYNTHETIC_PERIOD_S": "0.05"}
    assert plan.child_env(fast, "advisor", 1, {}, "synthetic")["EVENT_MAX_LEAD_S"] == "604800"
    for real_time in ({}, {"FEED_SYNTHETIC_PERIOD_S": "2"}):
        assert "EVENT_MAX_LEAD_S" not in plan.child_env(real_time, "risk", 1, {}, "synthetic")
    assert "EVENT_MAX_LEAD_S" not in plan.child_env({}, "risk", 1, {}, "live")
    own = {"EVENT_MAX_LEAD_S": "90", **fast}
    assert plan.child_env(own, "risk", 1, {}, "synthetic")["EVENT_MAX_LEAD_S"] == "90"


def test_each_run_starts_a_fresh_log_and_keeps_the_previous_one(tmp_path):
    log = tmp_path / "logs" / "nosuch.log"
    log.parent.mkdir()
    log.write_text("configuration error: from the previous run\n")
    child = children.Child("nosuch", 1, dict(os.environ), log)
    child.start(fresh_log=True)  # `cdb run nosuch`: argparse refuses it at once
    assert child.proc.wait(timeout=60) == 2
    assert "previous run" not in log.read_text() and "invalid choice" in log.read_text()
    assert "previous run" in (tmp_path / "logs" / "nosuch.log.1").read_text()
    child.start()  # a restart within the run appends
    child.proc.wait(timeout=60)
    assert log.read_text().count("invalid choice") == 2


def test_restart_backoff_doubles_to_a_cap_like_crashloopbackoff():
    assert [children.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert children.backoff(30) == children.BACKOFF_MAX_S
    child = children.Child("signal", 1, {}, Path("/nonexistent/x.log"))
    child.started_at = 100.0
    assert child.schedule_restart(101.0) == 1 and child.schedule_restart(103.0) == 2
    assert child.restart_at == 105.0 and child.restarts == 2
    assert not child.restart_due(104.9) and child.restart_due(105.0)
    child.started_at = 200.0  # then it stayed up a while: the next wait starts over
    assert child.schedule_restart(200.0 + children.BACKOFF_RESET_S) == 1


def test_ports_and_what_fresh_may_delete(tmp_path):
    assert plan.ports_for(8000) == plan.DEFAULT_PORTS
    assert plan.ports_for(9000)["notifier"] == 9005
    assert plan.looks_like_data_dir(tmp_path / "missing")
    (tmp_path / "up.lock").touch()
    assert plan.looks_like_data_dir(tmp_path)
    (tmp_path / "thesis.tex").touch()
    assert not plan.looks_like_data_dir(tmp_path)
    (tmp_path / "pg").mkdir()
    assert plan.looks_like_data_dir(tmp_path)


def test_breaker_and_service_texts():
    assert render.breaker_text({}) == "unknown (risk has not reported)"
    assert render.breaker_text({"engaged": "0"}) == "off"
    text = render.breaker_text({"engaged": "1", "drawdown": "1", "manual": "0", "reason": "-5 %"})
    assert text == "ENGAGED (drawdown): -5 %"
    view = ServiceView("risk", 8002, "unavailable", ["postgres unreachable"])
    assert render.service_state(view) == "unavailable: postgres unreachable"
    assert render.service_state(view, exited=2) == "EXITED (code 2)"
    assert render.service_state(view, exited="finished") == "finished"
    snap = Snapshot(counts={"signals": 3, "orders": 2, "fills": 2})
    assert render.headline(snap, "USDT").startswith(
        "signals 3 | orders 2 | fills 2 (since start of data) |"
    )


# -- the command --------------------------------------------------------------------------------


def test_missing_binaries_say_what_to_install(up_dir):
    # Only Python's own directory on PATH: no redis-server to be found.
    env = base_env(PATH=str(Path(sys.executable).parent))
    done = cdb(["up", "--data-dir", str(up_dir), "--http-port-base", "0"], env)
    assert done.returncode == 1
    assert "missing: redis-server" in done.stderr
    assert "apt-get install -y redis-server postgresql-15" in done.stderr
    assert not (up_dir / "redis").exists()


def test_fresh_refuses_a_directory_cdb_up_did_not_make(up_dir):
    up_dir.mkdir(parents=True)
    (up_dir / "notes.txt").write_text("mine")
    done = cdb(["up", "--fresh", "--data-dir", str(up_dir), "--http-port-base", "0"], base_env())
    assert done.returncode == 1
    assert f"--fresh refuses to delete {up_dir}: it was not made by cdb up" in done.stderr
    assert sorted(p.name for p in up_dir.iterdir()) == ["notes.txt"]  # nothing added


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to the postgres user")
def test_as_root_a_data_dir_postgres_cannot_enter_is_refused_with_the_fix():
    private = tempdir("cdb-private-")
    private.chmod(0o700)
    data = private / "inner" / "data"
    done = cdb(["up", "--data-dir", str(data), "--http-port-base", "0"], base_env())
    assert done.returncode == 1
    assert f"cannot enter {private}" in done.stderr
    assert f"chmod o+x {private}" in done.stderr
    assert "--data-dir" in done.stderr
    assert not (data / "pg" / "pgdata").exists()
    assert not (data / "redis").exists()  # refused before starting anything


def test_private_servers_status_and_a_clean_ctrl_c(up_dir):
    env = base_env()
    up = Command(
        ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--refresh", "1"],
        env,
        up_dir.parent / "up.out",
    )
    info: dict | None = None
    try:
        session = up_dir / "up.json"
        wait_until(session.exists, timeout=120, message=f"up.json (output: {up.out})")
        info = json.loads(session.read_text())
        assert set(info["http_ports"]) == set(plan.DEFAULT_PORTS)
        assert info["servers"]["POSTGRES_HOST"] == "127.0.0.1"
        assert oct(session.stat().st_mode & 0o777) == "0o600"

        # the per-user state file names it: found from any directory, without flags
        assert state.load(env=env).data_dir == up_dir.resolve()
        elsewhere = tempdir("cdb-elsewhere-")

        def status_ok():
            done = subprocess.run(
                [sys.executable, "-m", "cdb", "status"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                cwd=elsewhere,
            )
            return done.returncode == 0 and done

        done = wait_until(status_ok, timeout=90, interval=1, message="cdb status: all healthy")
        for name in plan.DEFAULT_PORTS:
            assert f"{name:<12} {info['http_ports'][name]:>5}  ok" in done.stdout
        assert "latest signals" in done.stdout and "latest risk events" in done.stdout
        assert f"data in {up_dir.resolve()}" in done.stdout

        exports = cdb(["env"], env)
        assert f"export PGPORT={info['servers']['POSTGRES_PORT']}" in exports.stdout
        backup = subprocess.run(
            [sys.executable, "-m", "cdb", "backup", "--output", str(elsewhere / "b")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=elsewhere,
        )
        assert backup.returncode == 0, backup.stderr
        assert "backup written" in backup.stdout

        second = cdb(["up", "--data-dir", str(up_dir), "--http-port-base", "0"], env)
        assert second.returncode == 1
        assert "another cdb up is running" in second.stderr

        up.proc.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0, up.text()
        output = up.text()
        assert "stopping services…" in output and output.rstrip().endswith("stopped.")
        assert "EXITED" not in output
        for name, pid in info["pids"].items():
            assert not alive(pid), f"{name} still runs"
        assert not (up_dir / "pg" / "pgdata" / "postmaster.pid").exists()
        assert not session.exists()
        assert state.load(env=env) is None and not state.state_path(env).exists()
        assert not alive(info["redis_pid"])
        for name in plan.DEFAULT_PORTS:
            log = (up_dir / "logs" / f"{name}.log").read_text()
            assert f"{name} stopped" in log, name  # a graceful stop, not a kill
    finally:
        cleanup(up, info, up_dir)


def cleanup(up: Command, info: dict | None, up_dir: Path) -> None:
    """After a failure: stop what this test started, by process id."""
    if up.proc.poll() is None:
        up.proc.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
    for pid in [*((info or {}).get("pids") or {}).values(), (info or {}).get("redis_pid")]:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
    if (up_dir / "pg" / "pgdata" / "postmaster.pid").exists():
        PostgresServer(up_dir / "pg").stop("immediate")


def test_named_servers_are_used_and_dead_services_are_restarted_with_backoff(
    up_dir, redis_env, pg_env
):
    # SIGNAL_THRESHOLD_PCT=0 is a bad setting: the signal engine exits 2 at each start, so it
    # crash-loops with growing waits; the risk manager, killed once, comes back healthy.
    env = base_env(**redis_env, **pg_env, SIGNAL_THRESHOLD_PCT="0")
    up = Command(
        ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--refresh", "1"],
        env,
        up_dir.parent / "up.out",
    )
    info: dict | None = None
    try:
        session = up_dir / "up.json"
        wait_until(session.exists, timeout=120, message=f"up.json (output: {up.out})")
        info = json.loads(session.read_text())
        port = info["http_ports"]["risk"]
        risk_ok = lambda: cdb_health(port)  # noqa: E731
        wait_until(risk_ok, timeout=60, interval=0.5, message="risk healthy")
        os.kill(info["pids"]["risk"], signal.SIGKILL)
        wait_until(
            lambda: "risk restarted (restart 1)" in up.text(),
            timeout=30,
            message="the risk manager restarted",
        )
        new_pid = json.loads(session.read_text())["pids"]["risk"]
        assert new_pid != info["pids"]["risk"] and alive(new_pid)
        wait_until(risk_ok, timeout=60, interval=0.5, message="the restarted risk healthy")
        wait_until(
            lambda: "signal exited with code 2; restart 3 in 4 s" in up.text(),
            timeout=60,
            message="the signal engine's third restart, after 4 s",
        )
        up.proc.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 1  # services died: a fault, even if restarted
        output = up.text()
        assert "(from REDIS_HOST)" in output and "(from POSTGRES_HOST" in output
        assert not (up_dir / "redis").exists() and not (up_dir / "pg").exists()
        assert "signal exited with code 2; restart 1 in 1 s" in output
        assert "signal exited with code 2; restart 2 in 2 s" in output
        assert "SIGNAL_THRESHOLD_PCT must be > 0" in output  # the tail of its log
        assert "restarts: risk 1, signal" in output
        info = json.loads(session.read_text()) if session.exists() else info
    finally:
        cleanup(up, info, up_dir)
    dsn = PostgresSettings(**pg_env).postgres_dsn()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM signals")  # migrated
        assert cur.fetchone()[0] == 0
    conn.close()


def cdb_health(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False
