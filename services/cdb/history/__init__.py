"""Candle history on disk: ``cdb download-data`` (ccxt, resumable) and freqtrade imports.

Files are the replay feed's CSV (``cdb.feed.replay``), one per symbol and timeframe, at
``<datadir>/<exchange>/<SYMBOL>-<timeframe>.csv``; ``cdb backtest`` and
``FEED_REPLAY_FILES`` read them as they are.
"""
