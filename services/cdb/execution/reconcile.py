"""Start-up reconciliation: settle every order left in flight before any new one is sent.

An order still ``SENT`` at start was being sent when the last process died. What
decides its fate is the venue that received it:

- **paper**: the paper book is the ledger, so a trade row means it was filled (the
  result is stored and republished) and no trade row means it never was (its
  redelivered entry sends it, looking it up first; under another mode it is
  cancelled, since nothing was executed);
- **validate**: the order-test endpoint executes nothing, so it is harmless either
  way (re-tested by its redelivery, or cancelled under another mode);
- **live**: the exchange is asked by client id; found → stored and republished;
  not found → ``UNKNOWN``: never treated as flat, a CRITICAL alert, and the service
  refuses new orders until a person resolves it. The same holds for a live order
  when the service now runs in another mode and cannot ask.

In live mode the account is checked against the book too:

- a position the account does not hold is a mismatch: the service fails closed;
- an order open at the exchange (on a market the book traded in the last
  ``LOOKBACK_S`` or holds, or whose base asset the account holds) under a client id
  the book does not know is a mismatch: it may fill at any moment, so the service
  fails closed until it is cancelled at the exchange and execution restarted;
- a balance of an asset the book has no position in (coins bought outside the
  system, or by an order whose result was lost) raises a WARNING alert and is listed
  in ``/status`` (``exchange_findings``), without failing closed: an account may hold
  coins the bot is not meant to trade.
"""

from __future__ import annotations

import logging
import time

from cdb.events import OrderResult
from cdb.exchange.trading import OrderRequest
from cdb.execution.executor import Executor
from cdb.execution.ledger import SENT, base_asset

log = logging.getLogger(__name__)

#: How far back the markets of the book's orders are searched for open orders, seconds.
LOOKBACK_S = 7 * 86_400
#: Holdings worth less than this many units are dust, not a finding.
DUST = 1e-8


def reconcile(executor: Executor) -> list[OrderResult]:
    """Settle ``SENT`` orders and (live) check positions; returns the results to republish.

    Raises ``ExchangeUnavailable`` when the exchange cannot be asked: the caller retries
    later and sends nothing meanwhile.
    """
    ledger, venue = executor.ledger, executor.venue
    results: list[OrderResult] = []
    for row in ledger.with_status(SENT):
        request = OrderRequest(row.client_id, row.symbol, row.side, row.quantity, row.price)  # type: ignore[arg-type]
        if row.mode == "paper":
            with ledger.transaction() as cur:
                found = ledger.find_trade(cur, row.client_id)
            if found is not None:
                results.append(ledger.record(row.client_id, found).to_result())
            elif venue.mode != "paper":
                ledger.set_status(
                    row.client_id,
                    SENT,
                    "CANCELLED",
                    "paper order interrupted before filling; mode changed",
                )
            else:
                log.info(
                    "order %s was never filled in the paper book: resent on redelivery",
                    row.client_id,
                )
        elif row.mode == "validate":
            if venue.mode != "validate":
                ledger.set_status(
                    row.client_id,
                    SENT,
                    "CANCELLED",
                    "validate-only order interrupted; nothing was executed",
                )
        elif row.mode == venue.mode:
            report = executor.look_up(request)
            if report is None:
                executor.mark_unknown(row, "sent, but the exchange does not report it")
                continue
            results.append(ledger.record(row.client_id, report).to_result())
        else:
            executor.mark_unknown(
                row, f"sent in {row.mode} mode; the {venue.mode} venue cannot look it up"
            )
    executor.refresh_unknown()
    balances = getattr(venue, "balances", None)
    if venue.mode == "live" and balances is not None:
        held = balances()
        ledger.set_cash(held.get(ledger.quote_asset, 0.0))
        mismatches = []
        for symbol, (quantity, _avg, mode) in ledger.open_positions().items():
            have = held.get(base_asset(symbol), 0.0)
            if mode == "live" and have < quantity * (1 - 1e-6):
                mismatches.append(
                    f"position {symbol} {quantity:g} in the ledger, the account holds {have:g}"
                )
        positions = ledger.open_positions()
        bases = {base_asset(s) for s in positions}
        untracked = {
            asset: amount
            for asset, amount in held.items()
            if asset != ledger.quote_asset and asset not in bases and amount > DUST
        }
        findings = [
            f"the account holds {amount:g} {asset}, the book has no position in it"
            for asset, amount in sorted(untracked.items())
        ]
        open_orders = getattr(venue, "open_orders", None)
        if open_orders is not None:
            symbols = ledger.recent_symbols(int(time.time()) - LOOKBACK_S)
            symbols |= {f"{asset}_{ledger.quote_asset}" for asset in untracked}
            found = open_orders(sorted(symbols))
            ids = [str(o.get("clientOrderId") or "") for o in found]
            known = ledger.known_client_ids([i for i in ids if i])
            for order, cid in zip(found, ids, strict=True):
                if cid not in known:
                    mismatches.append(
                        f"order {cid or order.get('id')} ({order.get('side')} "
                        f"{order.get('amount')} {order.get('symbol')}) is open at the exchange; "
                        "the book does not know it"
                    )
        for message in mismatches:
            executor.alert("CRITICAL", "POSITION_MISMATCH", message + " – execution halted", {})
        for message in findings:
            executor.alert("WARNING", "UNTRACKED_BALANCE", message, {})
        executor.problems.mismatches = mismatches
        executor.problems.findings = findings
    return results
