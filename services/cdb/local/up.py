"""``cdb up``: the whole pipeline on this machine — paper trading, synthetic market, one command.

Uses the Redis and PostgreSQL the environment names (``REDIS_HOST``,
``POSTGRES_HOST``) or starts private ones in the data directory, migrates the
database, starts every service as a child process (logs in ``DATA_DIR/logs``),
and shows a live summary until Ctrl-C (or ``--duration``), then stops the
services (producers first) and the private servers; a closed terminal (SIGHUP)
stops the same way, and if ``cdb up`` itself is killed its watchdog
(``cdb.local.watchdog``) does. A service that dies is reported and restarted with
backoff. ``DATA_DIR/up.json`` tells ``cdb status`` where everything runs.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import psycopg2
import redis

from cdb.local import plan, render, state, watchdog
from cdb.local.children import Child, stop_all
from cdb.local.servers import Servers, SetupError, check_binaries
from cdb.local.snapshot import Database, Snapshot, open_positions, read_breaker, read_services
from cdb.local.state import SESSION_FILE
from cdb.localservers import free_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=plan.default_data_dir(),
        help="where private servers keep their data and services their logs "
        "(default: $CDB_DATA_DIR or ./.cdb)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop by itself after this many seconds"
    )
    parser.add_argument(
        "--refresh", type=float, default=2.0, help="seconds between summary refreshes"
    )
    parser.add_argument(
        "--http-port-base",
        type=int,
        default=8000,
        help="HTTP port of the feed; the others follow (8000-8006); 0 = any free ports",
    )
    parser.add_argument(
        "--feed",
        choices=["synthetic", "replay", "live"],
        default="synthetic",
        help="market data: synthetic market, a replay of CSV files (FEED_REPLAY_FILES, default "
        "the shipped sample, stamped from now on), or live: the exchange's real prices "
        "(EXCHANGE_ID, SYMBOLS); execution is paper trading with all of them",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help=f"replay: market seconds per wall second (default {plan.REPLAY_SPEED:g}: one "
        "1-minute candle per second; 1 = real time, 0 = as fast as possible)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete the data directory's databases and logs first (start from zero)",
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=20.0, help="seconds each service gets to stop"
    )
    parser.add_argument(
        "--advisor",
        nargs="?",
        const="",
        default=None,
        metavar="MODEL",
        help="also run the ML advisor in shadow mode (ml_signals only), with MODEL or a "
        "model trained on the synthetic market first (see docs/advisor.md)",
    )


class Up:
    """One run of ``cdb up``; ``run()`` returns the exit code."""

    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        self.args = args
        self.out = out
        self.tty = out.isatty()
        self.data_dir: Path = args.data_dir.resolve()
        self.stop = threading.Event()
        self.children: dict[str, Child] = {}
        self.servers: Servers | None = None
        self.ports: dict[str, int] = {}
        self.notes: list[str] = []
        self.finished: set[str] = set()
        self.started = time.monotonic()
        self.quote = os.environ.get("QUOTE_ASSET", "USDT")
        self.watchdog: subprocess.Popen | None = None

    # -- output ------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        _print(text, self.out)

    def fail(self, text: str) -> int:
        _print(f"cdb up: {text}", sys.stderr)
        return 1

    # -- steps -------------------------------------------------------------------------------

    def _resolve_ports(self) -> None:
        base = self.args.http_port_base
        if base == 0:
            self.ports = {name: free_port() for name in plan.DEFAULT_PORTS}
            return
        wanted = plan.ports_for(base)
        for name, port in wanted.items():
            if port is not None and not port_free(port):
                raise SetupError(
                    f"port {port} ({name}) is in use: is another cdb up running? "
                    "Stop it, or pass --http-port-base 0 to use free ports"
                )
        self.ports = {k: v for k, v in wanted.items() if v is not None}

    def _refuse_foreign_fresh(self) -> None:
        if self.args.fresh and not plan.looks_like_data_dir(self.data_dir):
            raise SetupError(
                f"--fresh refuses to delete {self.data_dir}: it was not made by cdb up"
            )

    def _take_over_leftovers(self) -> None:
        """With the lock held: stop what a dead cdb up left running in this directory.

        Its watchdog normally does that; this covers a watchdog that died too. Only this
        directory's processes are touched (the ones up.json records, checked by their
        command line, and the PostgreSQL whose postmaster.pid is in DATA_DIR/pg).
        """
        old = state.read(self.data_dir / SESSION_FILE, self.data_dir)
        pg_left = (self.data_dir / "pg" / "pgdata" / "postmaster.pid").exists()
        if old is None and not pg_left:
            return
        who = f"cdb up (pid {old.pid})" if old is not None else "a cdb up"
        self.say(f"{who} ended without stopping its processes; stopping what it left running…")
        watchdog.clean_up(self.data_dir, self.args.stop_timeout, log=lambda t: self.say(f"  {t}"))

    def _prepare_data_dir(self) -> None:
        """With the lock held, so a running cdb up never loses its data under it."""
        if self.args.fresh:
            self._refuse_foreign_fresh()
            for name in ("redis", "pg", "logs", SESSION_FILE, plan.LAST_RUN_FILE):
                path = self.data_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()

    def _check_not_locked(self) -> None:
        """Refuse early, creating nothing, when another cdb up holds this directory's lock."""
        path = self.data_dir / "up.lock"
        if not path.exists():
            return
        with path.open("r") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SetupError(
                    f"another cdb up is running with {self.data_dir}; stop it first "
                    "(or use another --data-dir)"
                ) from None
            fcntl.flock(f, fcntl.LOCK_UN)

    def _lock(self) -> None:
        self._lock_file = (self.data_dir / "up.lock").open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SetupError(
                f"another cdb up is running with {self.data_dir}; stop it first "
                "(or use another --data-dir)"
            ) from None

    def _start_watchdog(self) -> None:
        """Stops everything if this process dies without doing so (see cdb.local.watchdog)."""
        self.watchdog = watchdog.start(self.data_dir, self.args.stop_timeout)

    def _previous_feed(self) -> str | None:
        try:
            raw = json.loads((self.data_dir / plan.LAST_RUN_FILE).read_text())
        except (OSError, ValueError):
            return None
        return raw.get("feed") if isinstance(raw, dict) else None

    def _warn_about_kept_positions(self, previous: str | None) -> None:
        """Open positions from a run on another --feed: say so on the screen."""
        assert self.servers is not None
        try:
            symbols = open_positions(self.servers.postgres_settings())
        except psycopg2.Error:
            return  # the summary reports an unreachable database
        warning = plan.feed_change_warning(previous, self.args.feed, symbols)
        if warning:
            self._note(warning)
        (self.data_dir / plan.LAST_RUN_FILE).write_text(json.dumps({"feed": self.args.feed}))

    def _write_session(self) -> None:
        assert self.servers is not None
        private = {
            k: v
            for k, v in self.servers.env.items()
            if (k.startswith("REDIS_") and self.servers.redis_private)
            or (k.startswith("POSTGRES_") and self.servers.postgres_private)
        }
        rs = self.servers.redis_server
        # mode 0600: it holds the private database's password
        state.record(
            {
                "pid": os.getpid(),
                "started_at": int(time.time()),
                "data_dir": str(self.data_dir),
                "http_ports": self.ports,
                "pids": {n: c.proc.pid for n, c in self.children.items() if c.proc},
                "redis_pid": rs.proc.pid if rs is not None and rs.proc else None,
                "servers": private,  # only private servers: external ones come from env
                "logs": str(self.data_dir / "logs"),
                "feed": self.args.feed,
                "watchdog_pid": self.watchdog.pid if self.watchdog is not None else None,
            }
        )

    def _start_children(self) -> None:
        assert self.servers is not None
        for name in plan.START_ORDER:
            servers = {
                **self.servers.env,
                "NOTIFIER_URL": f"http://127.0.0.1:{self.ports['notifier']}",
            }
            env = plan.child_env(
                os.environ,
                name,
                self.ports[name],
                servers,
                self.args.feed,
                speed=self.args.speed,
            )
            child = Child(name, self.ports[name], env, self.data_dir / "logs" / f"{name}.log")
            child.start(fresh_log=True)  # the previous run's log becomes NAME.log.1
            self.children[name] = child
        if self.args.advisor is not None:
            self._start_advisor()

    def _start_advisor(self) -> None:
        from cdb.advisor import local as advisor

        assert self.servers is not None
        port = free_port()
        env = plan.child_env(os.environ, advisor.NAME, port, self.servers.env, self.args.feed)
        env.update(self.servers.advisor_env)  # its own Redis user (cdb.redis_acl)
        lookback = int(env.get("SIGNAL_LOOKBACK_MIN", "15"))
        model = advisor.ensure_model(self.args.advisor, self.data_dir, lookback)
        env["ADVISOR_MODEL_PATH"] = str(model)
        env.setdefault("ADVISOR_COOLDOWN_S", env["SIGNAL_COOLDOWN_S"])  # the rules' cooldown
        log = self.data_dir / "logs" / f"{advisor.NAME}.log"
        child = Child(advisor.NAME, port, env, log)
        child.start()
        self.children[advisor.NAME] = child
        self.ports[advisor.NAME] = port  # its row and /metrics URL in the summary
        self.say(f"advisor    shadow mode, model {model}, http://127.0.0.1:{port}/metrics")

    def _describe_servers(self) -> None:
        assert self.servers is not None
        env = self.servers.env
        r = "private" if self.servers.redis_private else "from REDIS_HOST"
        p = "private" if self.servers.postgres_private else "from POSTGRES_HOST"
        self.say(f"Redis      {env.get('REDIS_HOST')}:{env.get('REDIS_PORT', '6379')} ({r})")
        self.say(
            f"PostgreSQL {env.get('POSTGRES_HOST')}:{env.get('POSTGRES_PORT', '5432')}"
            f"/{env.get('POSTGRES_DB', 'claire_de_binare')} ({p}, migrated)"
        )
        self.say(f"logs       {self.data_dir / 'logs'}")

    # -- the watch loop ----------------------------------------------------------------------

    def _check_children(self) -> None:
        """Report a death, schedule its restart (backoff), and start what is due."""
        now = time.monotonic()
        for child in self.children.values():
            if child.died and not child.reported:
                code = child.exit_code
                tail = "\n    ".join(child.log_tail(6))
                if child.name == "feed" and code == 0:  # a replay with FEED_REPLAY_AT_END=stop
                    child.reported = True
                    self.finished.add(child.name)
                    self._note("feed finished (its replay is over); the others keep running")
                    continue
                wait = child.schedule_restart(now)
                self._note(
                    f"{child.name} exited with code {code}; restart {child.restarts} in "
                    f"{wait:.0f} s; log {child.log_path}:\n    {tail}"
                )
            elif child.restart_due(now):
                child.start()
                self._note(f"{child.name} restarted (restart {child.restarts})")
                self._write_session()  # its new process id

    def _note(self, text: str) -> None:
        self.notes.append(text)
        _print(f"cdb up: {text}", sys.stderr)

    def _down(self) -> dict[str, int | str]:
        """Per service that is not running: its state text for the summary."""
        now = time.monotonic()
        out: dict[str, int | str] = {}
        for child in self.children.values():
            if child.restart_at is not None:
                left = max(0, round(child.restart_at - now))
                out[child.name] = f"EXITED ({child.last_exit}), restart in {left} s"
            elif child.name in self.finished:
                out[child.name] = "finished"
        return out

    def _restarts(self) -> dict[str, int]:
        return {c.name: c.restarts for c in self.children.values() if c.restarts}

    def _next_wait(self) -> float:
        """Seconds until the next refresh or the next restart, whichever comes first."""
        wait = self.args.refresh
        due = [c.restart_at for c in self.children.values() if c.restart_at is not None]
        if due:
            wait = min(wait, max(0.05, min(due) - time.monotonic()))
        return wait

    def _snapshot(self, db: Database, client: redis.Redis) -> Snapshot:
        snap = Snapshot(services=read_services(dict(self.ports)))
        db.read(snap, latest=1)
        read_breaker(client, snap)
        return snap

    def _show(self, snap: Snapshot, final: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty or final:
            text = render.table(
                snap,
                dict(self.ports),
                elapsed,
                self._down(),
                self.quote,
                f"data {self.data_dir}",
                live=not final,
                restarts=self._restarts(),
                feed=self.args.feed,
            )
            if self.notes:
                text += "\n\n" + "\n".join(self.notes[-3:])
            prefix = "\x1b[H\x1b[2J" if self.tty and not final else ""
            self.say(prefix + text)
        else:
            self.say(render.line(snap, elapsed, self._down(), self.quote, self._restarts()))

    def _watch(self) -> Snapshot:
        assert self.servers is not None
        db = Database(self.servers.postgres_settings())
        rs = self.servers.redis_settings()
        client = redis.Redis(
            host=rs.REDIS_HOST,
            port=rs.REDIS_PORT,
            db=rs.REDIS_DB,
            password=rs.REDIS_PASSWORD.get_secret_value() if rs.REDIS_PASSWORD else None,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        deadline = None if self.args.duration is None else self.started + self.args.duration
        snap = Snapshot()
        try:
            while not self.stop.is_set():
                self._check_children()
                snap = self._snapshot(db, client)
                self._show(snap)
                wait = self._next_wait()
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        break
                self.stop.wait(wait)
            self._check_children()
            return self._snapshot(db, client)
        finally:
            db.close()
            client.close()

    # -- the whole run -----------------------------------------------------------------------

    def run(self) -> int:
        redis_private = plan.wants_private(os.environ, "REDIS_HOST")
        pg_private = plan.wants_private(os.environ, "POSTGRES_HOST")
        try:
            if self.args.speed is not None and (self.args.feed != "replay" or self.args.speed < 0):
                raise SetupError("--speed takes a number >= 0 and applies to --feed replay only")
            check_binaries(redis_private, pg_private)
            # every check before anything is written: a refused cdb up leaves nothing behind
            self._refuse_foreign_fresh()
            self._check_not_locked()
            self._resolve_ports()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._take_over_leftovers()
            self._prepare_data_dir()
        except SetupError as exc:
            return self.fail(str(exc))
        self.servers = Servers(
            self.data_dir,
            redis_private,
            pg_private,
            base_env=dict(os.environ),
            advisor_user=self.args.advisor is not None,
        )
        snap: Snapshot | None = None
        try:
            self._start_watchdog()
            self.say("starting servers…")
            previous = self._previous_feed()
            self.servers.start()
            self._describe_servers()
            self._warn_about_kept_positions(previous)
            if self.stop.is_set():
                return 0
            self._start_children()
            self._write_session()
            self.say(
                f"services   started: {', '.join(plan.START_ORDER)} "
                f"(paper trading, {self.args.feed} market data)"
            )
            self.say(f"dashboard  http://127.0.0.1:{self.ports['dashboard']}/")
            snap = self._watch()
        except SetupError as exc:
            return self.fail(str(exc))
        finally:
            self._shutdown()
        if snap is not None:
            self._show(snap, final=True)
        self.say("stopped.")
        # a service that died (even if restarted since) is a fault worth an exit code
        return 1 if self._restarts() else 0

    def _shutdown(self) -> None:
        if self.children:
            self.say("stopping services…")
            order = (*plan.STOP_ORDER, "advisor")  # the advisor, if started, with the consumers
            killed = stop_all(self.children, order, self.args.stop_timeout)
            if killed:
                self.notes.append(f"killed after {self.args.stop_timeout}s: {', '.join(killed)}")
        if self.servers is not None:
            self.servers.stop()
        state.forget(self.data_dir, os.getpid())
        watchdog.dismiss(self.watchdog)


def _print(text: str, stream: TextIO) -> None:
    """Print, but never fail: after SIGHUP the terminal may be gone while cdb up stops."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream, flush=True)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now.

    Binds with ``SO_REUSEADDR`` as the services' own server (waitress) does, so the
    TIME_WAIT sockets a just-stopped run leaves for ~60 s do not count as in use, while a
    socket that listens (or is bound) there still does.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def main(args: argparse.Namespace) -> int:
    up = Up(args)

    def request_stop(*_: object) -> None:
        up.stop.set()

    # a closed terminal (SIGHUP) stops as gracefully as Ctrl-C and SIGTERM
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    return up.run()
