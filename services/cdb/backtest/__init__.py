"""Backtesting: real candles through the live signal engine, risk handlers and paper fill model.

``sources`` reads candle files (our replay CSV, plain CSV, freqtrade json/feather),
``grid`` turns them into the feed's ``MarketData`` values in time chunks, ``sim`` is the
risk manager's own handlers with a simulated clock and exchange, ``run`` drives the
loop, ``metrics`` / ``render`` make the report, ``cli`` is ``cdb backtest``.
"""

#: What the ``backtest`` extra installs (``pip install 'claire-de-binare[backtest]'``).
EXTRA_MODULES = frozenset({"numpy", "pyarrow", "matplotlib"})


def missing_extra(command: str, exc: ModuleNotFoundError) -> int:
    """Say which install ``command`` needs when a module of the extra is absent; exit code 2.

    Re-raises anything else: a missing module outside the extra is a bug, not a setup step.
    """
    import sys

    if (exc.name or "").split(".")[0] not in EXTRA_MODULES:
        raise exc
    print(
        f"cdb {command}: needs {exc.name}: pip install 'claire-de-binare[backtest]'",
        file=sys.stderr,
    )
    return 2
