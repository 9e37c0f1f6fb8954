"""The ML signal advisor: learns from candles, scores market data, publishes to ``ml_signals``.

Shadow mode only: nothing that trades reads ``ml_signals`` (see docs/advisor.md).
"""
