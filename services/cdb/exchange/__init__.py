"""The exchange adapter: the only package that imports ccxt.

``errors`` translates ccxt's exceptions into our own, named by how they are
handled; ``market`` reads public market data (OHLCV candles, tickers) for the
feed. Everything outside this package sees our errors and plain data, never ccxt.
"""
