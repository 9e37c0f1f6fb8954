"""``python -m cdb.execution.resolve``: a person settles an order whose outcome is UNKNOWN.

The execution service fails closed while any order is ``UNKNOWN`` (sent, but the
exchange does not report it; the service keeps asking and settles it once the exchange
does). Check the order on the exchange's website or app under its client order id,
then record what really happened:

    python -m cdb.execution.resolve --list
    python -m cdb.execution.resolve CLIENT_ID --status CANCELLED --note "not on MEXC"
    python -m cdb.execution.resolve CLIENT_ID --status FILLED --filled-quantity 0.01 \
        --avg-price 65000 --fee 0.65 --note "filled, seen in MEXC order history"

A fill is booked like any other (trade, position and cash in one transaction), the
``order_result`` is published, and the running service resumes within
``UNKNOWN_RECHECK_S`` seconds once no UNKNOWN order is left. It reads the same
environment variables as the service (POSTGRES_*, REDIS_*, QUOTE_ASSET).
"""

from __future__ import annotations

import argparse
import sys

from cdb.exchange.trading import ExecutionReport
from cdb.execution.ledger import UNKNOWN, Ledger
from cdb.execution.settings import ExecutionSettings
from cdb.settings import SettingsError, exit_on_bad_settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cdb.execution.resolve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("client_id", nargs="?", help="the order's client id")
    p.add_argument("--list", action="store_true", help="list the UNKNOWN orders and exit")
    p.add_argument("--status", choices=["FILLED", "PARTIALLY_FILLED", "CANCELLED", "REJECTED"])
    p.add_argument("--filled-quantity", type=float, default=0.0)
    p.add_argument("--avg-price", type=float, default=0.0)
    p.add_argument("--fee", type=float, default=0.0, help="fee in QUOTE_ASSET")
    p.add_argument("--exchange-order-id", default=None)
    p.add_argument("--note", default="", help="why: kept in orders.error for the audit trail")
    p.add_argument("--no-publish", action="store_true", help="do not publish the order_result")
    return p


def report_from_args(args: argparse.Namespace) -> ExecutionReport:
    """Validate the person's input: a fill needs a quantity and a price, a non-fill has none."""
    filled = args.status in ("FILLED", "PARTIALLY_FILLED")
    if filled and (args.filled_quantity <= 0 or args.avg_price <= 0):
        raise ValueError(f"--status {args.status} needs --filled-quantity > 0 and --avg-price > 0")
    if not filled and args.filled_quantity:
        raise ValueError(f"--status {args.status} cannot have a filled quantity")
    if args.fee < 0:
        raise ValueError("--fee must be >= 0")
    note = f"resolved by a person: {args.note}".strip()[:500]
    return ExecutionReport(
        args.client_id,
        args.status,
        args.filled_quantity,
        args.avg_price,
        args.fee,
        args.exchange_order_id,
        note,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(ExecutionSettings)
    except SettingsError as exc:
        exit_on_bad_settings(exc)
    ledger = Ledger(settings, settings.QUOTE_ASSET, settings.TRADING_MODE)
    try:
        unknown = ledger.with_status(UNKNOWN)
        if args.list or not args.client_id:
            for o in unknown:
                print(f"{o.client_id}\t{o.mode}\t{o.side} {o.quantity:g} {o.symbol}\t{o.error}")
            print(f"{len(unknown)} UNKNOWN order(s)")
            return 0
        if not args.status:
            print("--status is required to resolve an order", file=sys.stderr)
            return 2
        if args.client_id not in {o.client_id for o in unknown}:
            print(f"order {args.client_id} is not UNKNOWN; nothing changed", file=sys.stderr)
            return 1
        try:
            report = report_from_args(args)
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        stored = ledger.record(args.client_id, report)
    finally:
        ledger.close()
    print(f"order {stored.client_id} is now {stored.status}")
    if not args.no_publish:
        from cdb.bus import Bus
        from cdb.runtime import redis_client

        Bus(redis_client(settings), service="execution-resolve").publish(stored.to_result())
        print("order_result published")
    return 0


if __name__ == "__main__":
    sys.exit(main())
