"""``cdb explain CLIENT_ID [--json]`` (or ``--signal SIGNAL_ID``): the dashboard's explanation.

Exit codes: 0 found, 1 nothing in the audit trail names that client id (or the database
is unreachable), 2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import psycopg2

from cdb.dashboard import explain, queries
from cdb.dashboard.cli_common import add_data_dir, postgres_for
from cdb.events import CLIENT_ID_PATTERN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "client_id", help="the order's client id (orders.client_id), or with --signal a signal id"
    )
    parser.add_argument(
        "--signal", action="store_true", help="explain a signal (also one that got no order)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_data_dir(parser)


def main(args: argparse.Namespace) -> int:
    if not args.signal and not re.match(CLIENT_ID_PATTERN, args.client_id):
        print(f"cdb explain: {args.client_id!r} is not a client id", file=sys.stderr)
        return 2
    reader = queries.Reader(postgres_for(args.data_dir), quote_asset="")
    try:
        if args.signal:
            rows = reader.explain_rows(signal_id=args.client_id)
        else:
            rows = reader.explain_rows(args.client_id)
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"cdb explain: database unreachable: {first}", file=sys.stderr)
        return 1
    finally:
        reader.close()
    expl = explain.build(**rows)
    print(json.dumps(expl, indent=2, default=str) if args.json else explain.to_text(expl))
    return 0 if expl["found"] else 1
