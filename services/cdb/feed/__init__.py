"""The market data feed: candles from a source (live MEXC, a replay file, a synthetic market)
turned into ``market_data`` events with the move and volume over the lookback window."""
