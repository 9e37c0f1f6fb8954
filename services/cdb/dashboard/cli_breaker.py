"""``cdb breaker engage|release|status [--kill-switch] --reason TEXT``.

Sends the same ``Control`` the operator and the dashboard send (:mod:`cdb.dashboard.control`)
and waits for the risk manager to confirm it in its breaker hash. Exit codes: 0 confirmed
(or status read), 1 not confirmed within ``--wait`` seconds (the control stays in the
stream and is obeyed when the risk manager reads it) or Redis unreachable, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

import redis

from cdb.bus import Bus
from cdb.dashboard import control
from cdb.dashboard.cli_common import add_data_dir, redis_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["engage", "release", "status"])
    parser.add_argument(
        "--kill-switch",
        action="store_true",
        help="engage the kill switch (no orders at all, exits included); "
        "release clears the breaker and the kill switch together",
    )
    parser.add_argument("--reason", default="", help="why (required for engage and release)")
    parser.add_argument(
        "--wait", type=float, default=15.0, help="seconds to wait for the risk manager"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_data_dir(parser)


def describe(state: dict[str, Any] | None) -> str:
    """One line for a person: engaged by whom and why, and when the risk manager said so."""
    if state is None:
        return "breaker: not reported (the risk manager has not written its state yet)"
    by = [
        n
        for n, on in (
            ("manual", state["manual"]),
            ("kill switch", state["kill_switch"]),
            ("daily loss limit", state["drawdown"]),
        )
        if on
    ]
    head = f"ENGAGED by {', '.join(by)}" if state["engaged"] else "released"
    if not state.get("updated_at"):
        if not state["engaged"]:  # as the dashboard says it
            return "breaker: released – never engaged (as reported by the risk manager)"
        when = "unknown"
    else:
        when = dt.datetime.fromtimestamp(state["updated_at"], dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC"
        )
    return f"breaker: {head} – {state['reason'] or 'no reason'} (risk manager, {when})"


def main(args: argparse.Namespace) -> int:
    client = redis_for(args.data_dir)
    try:
        if args.action == "status":
            state = control.read_breaker(client)
            print(json.dumps({"breaker": state}) if args.json else describe(state))
            return 0
        if args.kill_switch and args.action == "release":
            print(
                "note: release clears the manual breaker and the kill switch together",
                file=sys.stderr,
            )
        try:
            sent = control.send(
                Bus(client, service="cli", consumer="cli"),
                args.action,
                args.kill_switch,
                args.reason,
                "cli",
            )
        except ValueError as exc:
            print(f"cdb breaker: {exc} (--reason)", file=sys.stderr)
            return 2
        state = control.wait_confirmed(client, sent.control_id, max(0.0, args.wait))
    except redis.RedisError as exc:
        print(f"cdb breaker: Redis unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    ok = state is not None
    if args.json:
        print(
            json.dumps(
                {
                    "control_id": sent.control_id,
                    "action": sent.action,
                    "confirmed": ok,
                    "breaker": state,
                }
            )
        )
    elif ok:
        print(f"{sent.action} confirmed (control {sent.control_id})")
        print(describe(state))
    else:
        print(
            f"{sent.action} sent (control {sent.control_id}) but not confirmed within "
            f"{args.wait:g} s: is the risk manager running? It obeys the control when it reads it."
        )
    return 0 if ok else 1
