"""``cdb up`` stopping and starting again: ports left in TIME_WAIT, refusals that leave nothing
behind, a terminal closed (SIGHUP) or ``kill -9`` of ``cdb up``, leftovers of a dead session."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg2
from helpers import wait_until
from test_local import Command, alive, base_env, cdb, cdb_health, cleanup, tempdir

from cdb.local.up import port_free


def _time_wait_port() -> int:
    """A port whose only socket is in TIME_WAIT: the server side closed the connection first.

    The listener sets SO_REUSEADDR as waitress (the services' HTTP server) does; Linux lets a
    new bind take over a TIME_WAIT port only when both sockets set it.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the active close: this end (port) goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def _states(port: int) -> set[str]:
    """TCP states of the sockets bound to local ``port`` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            out.add(fields[3])
    return out


def test_a_port_in_time_wait_is_free_and_a_listening_port_is_not():
    port = _time_wait_port()
    assert "06" in _states(port)  # 06 = TIME_WAIT: what a just-stopped cdb up leaves
    assert port_free(port)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert not port_free(busy.getsockname()[1])


def test_a_busy_port_refuses_cdb_up_and_leaves_no_data_dir_behind():
    up_dir = tempdir("cdb-up-") / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cdb(["up", "--data-dir", str(up_dir), "--http-port-base", str(port)], base_env())
    assert done.returncode == 1
    assert f"port {port} (feed) is in use" in done.stderr
    assert not up_dir.exists()  # no data dir, no up.lock: the check came before anything


def _start(up_dir: Path, out: str, started: list[Command]) -> tuple[Command, dict]:
    up = Command(
        ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--refresh", "1"],
        base_env(),
        up_dir.parent / out,
    )
    started.append(up)
    session = up_dir / "up.json"
    wait_until(session.exists, timeout=120, message=f"up.json (output: {up.out})")
    info = json.loads(session.read_text())
    ports = info["http_ports"].values()
    wait_until(lambda: all(cdb_health(p) for p in ports), timeout=90, message="all healthy")
    return up, info


def _everything_gone(up_dir: Path, info: dict) -> bool:
    pids = [*info["pids"].values(), info["redis_pid"], info["watchdog_pid"]]
    return (
        not any(alive(p) for p in pids)
        and not (up_dir / "pg" / "pgdata" / "postmaster.pid").exists()
        and not (up_dir / "up.json").exists()
    )


def test_sighup_kill_9_and_a_dead_watchdog_leave_nothing_running(tmp_path):
    up_dir = tempdir("cdb-up-") / "data"
    info: dict | None = None
    started: list[Command] = []
    try:
        # a closed terminal: SIGHUP stops as gracefully as Ctrl-C
        up, info = _start(up_dir, "hup.out", started)
        up.proc.send_signal(signal.SIGHUP)
        assert up.wait(timeout=90) == 0, up.text()
        assert up.text().rstrip().endswith("stopped.")
        assert _everything_gone(up_dir, info)
        assert "feed stopped" in (up_dir / "logs" / "feed.log").read_text()

        # kill -9: the watchdog stops the services, PostgreSQL and Redis
        up, info = _start(up_dir, "kill.out", started)
        up.kill()
        wait_until(lambda: _everything_gone(up_dir, info), timeout=90, message="leftovers")
        assert "feed stopped" in (up_dir / "logs" / "feed.log").read_text()  # gracefully
        assert "stopping PostgreSQL" in (up_dir / "logs" / "watchdog.log").read_text()

        assert json.loads((up_dir / "last-run.json").read_text()) == {"feed": "synthetic"}

        # cdb up and its watchdog both killed: the next cdb up takes over and says so
        up, info = _start(up_dir, "both.out", started)
        # and a position it keeps, as if opened on live prices: the next run warns
        (up_dir / "last-run.json").write_text('{"feed": "live"}')
        pg = {k: v for k, v in info["servers"].items() if k.startswith("POSTGRES_")}
        with (
            psycopg2.connect(
                host=pg["POSTGRES_HOST"],
                port=pg["POSTGRES_PORT"],
                user=pg["POSTGRES_USER"],
                password=pg["POSTGRES_PASSWORD"],
                dbname=pg["POSTGRES_DB"],
            ) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(
                "INSERT INTO positions (symbol, quantity, avg_price, updated_ts) "
                "VALUES ('ETH_USDT', 0.5, 3100, 0)"
            )
        os.kill(info["watchdog_pid"], signal.SIGKILL)
        up.kill()
        again = cdb(
            ["up", "--data-dir", str(up_dir), "--http-port-base", "0", "--duration", "3"],
            base_env(),
            timeout=180,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"cdb up (pid {info['pid']}) ended without stopping its processes" in again.stdout
        assert "stopping PostgreSQL" in again.stdout
        assert "warning: 1 open position (ETH_USDT) from the previous run on --feed live" in (
            again.stderr
        )
        assert _everything_gone(up_dir, info)
    finally:
        for up in started:
            cleanup(up, info, up_dir)


def test_cdb_status_into_a_closed_pipe_ends_quietly(tmp_path):
    env = base_env(CDB_STATE_DIR=str(tmp_path), REDIS_HOST="127.0.0.1", REDIS_PORT="1")
    env.update(POSTGRES_HOST="127.0.0.1", POSTGRES_PORT="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdb", "status", "--http-port-base", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    proc.stdout.close()  # the reader is gone before anything is written: `cdb status | head`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
