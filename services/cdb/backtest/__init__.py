"""Backtesting: real candles through the live signal engine, risk handlers and paper fill model.

``sources`` reads candle files (our replay CSV, plain CSV, freqtrade json/feather),
``grid`` turns them into the feed's ``MarketData`` values in time chunks, ``sim`` is the
risk manager's own handlers with a simulated clock and exchange, ``run`` drives the
loop, ``metrics`` / ``render`` make the report, ``cli`` is ``cdb backtest``.
"""
