"""The ``cdb`` command: run a service, write the event schema, migrate the database, and more.

Subcommands import their modules lazily, so ``cdb run signal`` does not pay for
ccxt or kopf, and a bad setting is reported before anything heavy loads.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

#: ``cdb run NAME`` → the module whose ``SERVICE`` class is run.
SERVICES: dict[str, str] = {
    "feed": "cdb.feed.service",
    "signal": "cdb.signal.service",
    "risk": "cdb.risk.service",
    "execution": "cdb.execution.service",
    "persistence": "cdb.persistence.service",
    "notifier": "cdb.notifier.service",
    "dashboard": "cdb.dashboard.service",
    "advisor": "cdb.advisor.service",
}

#: Extra subcommands contributed by other modules: name → (module, help). Each module has
#: ``add_arguments(parser)`` and ``main(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("cdb.local.up", "run the whole pipeline locally (paper trading, synthetic feed)"),
    "status": ("cdb.local.status", "print each service's health and the latest activity"),
    "env": ("cdb.local.env", "print export lines for the running cdb up's private servers"),
    "backup": ("cdb.backup.cli_backup", "dump PostgreSQL (and Redis) into a directory"),
    "restore": ("cdb.backup.cli_restore", "restore a backup directory into an empty database"),
    "healthcheck": ("cdb.healthcheck", "the image's HEALTHCHECK: is the container's program live"),
    "breaker": ("cdb.dashboard.cli_breaker", "engage, release or show the circuit breaker"),
    "explain": ("cdb.dashboard.cli_explain", "why an order was sent: signal, risk checks, fills"),
    "backtest": ("cdb.backtest.cli", "run the live strategy and risk rules over candle files"),
    "download-data": ("cdb.history.cli", "download OHLCV candles (ccxt) or import freqtrade's"),
    "report": ("cdb.audit.cli", "figures and rule compliance of the live audit trail"),
    "ml": ("cdb.advisor.cli", "the ML advisor: sample data, train, evaluate, report"),
}

REPO_SCHEMA = Path("docs") / "EVENT_SCHEMA.json"


def run_service(name: str) -> int:
    """Start one service in this process; returns its exit code."""
    from cdb.bus import Bus
    from cdb.bus_observer import ObserverBus
    from cdb.logs import configure_logging, secret_values
    from cdb.runtime import Runtime, redis_client
    from cdb.settings import (
        SettingsError,
        design_overrides,
        exit_on_bad_settings,
        load_settings,
    )

    module = importlib.import_module(SERVICES[name])
    service_cls = module.SERVICE
    try:
        settings = load_settings(service_cls.settings_class, **design_overrides(name))
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    configure_logging(service_cls.name, settings.LOG_LEVEL, secret_values(settings))
    bus_options = {
        "service": service_cls.name,
        "maxlen_market_data": settings.STREAM_MAXLEN_MARKET_DATA,
        "maxlen_default": settings.STREAM_MAXLEN,
        "claim_idle_ms": settings.CLAIM_IDLE_MS,
        "max_lead_s": settings.EVENT_MAX_LEAD_S,
        "coalesce_ms": settings.MARKET_DATA_COALESCE_MS,
    }
    warmup_s = service_cls.observer_warmup_s(settings)
    if warmup_s is None:
        bus = Bus(redis_client(settings), **bus_options)
    else:  # reads without a consumer group, with read rights only (the advisor)
        bus = ObserverBus(redis_client(settings), warmup_s=warmup_s, **bus_options)
    try:
        service = service_cls(settings, bus)
    except SettingsError as exc:  # cross-setting checks made when the service is built
        exit_on_bad_settings(exc)
    return Runtime(service).run()


def write_schema(path: Path) -> int:
    from cdb.events import json_schema

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return 0


def db_command(action: str) -> int:
    from cdb.db.migrate import migrate, schema_version
    from cdb.local.state import server_overrides
    from cdb.settings import PostgresSettings, SettingsError, exit_on_bad_settings, load_settings

    try:  # with no POSTGRES_HOST: the running `cdb up`'s private server, if any
        settings = load_settings(PostgresSettings, **server_overrides(("POSTGRES_",)))
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    if action == "migrate":
        applied = migrate(settings)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none (up to date)'}")
    print(f"schema version: {schema_version(settings) or 'empty'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdb", description="Claire de Binare trading system")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one service (configured by environment variables)")
    run.add_argument("service", choices=sorted(SERVICES))

    schema = sub.add_parser("schema", help="write the events' JSON Schema")
    schema.add_argument("--output", type=Path, default=REPO_SCHEMA)

    db = sub.add_parser("db", help="database schema")
    db.add_argument("action", choices=["migrate", "version"])

    op = sub.add_parser(
        "operator", help="run the Kubernetes operator against the current kubeconfig"
    )
    op.add_argument("args", nargs=argparse.REMAINDER, help="passed to cdb-operator")

    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError:
            p.set_defaults(_missing=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["healthcheck"]:  # runs every HEALTHCHECK interval: load nothing else
        from cdb import healthcheck

        parser = argparse.ArgumentParser(prog="cdb healthcheck")
        healthcheck.add_arguments(parser)
        return healthcheck.main(parser.parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_service(args.service)
    if args.command == "schema":
        return write_schema(args.output)
    if args.command == "db":
        return db_command(args.action)
    if args.command == "operator":
        from cdb_operator.main import main as operator_main

        return operator_main(args.args)
    if getattr(args, "_missing", None):
        print(f"cdb {args.command}: not available ({args._missing} is missing)", file=sys.stderr)
        return 1
    module, _ = COMMANDS[args.command]
    return importlib.import_module(module).main(args)


if __name__ == "__main__":
    sys.exit(main())
