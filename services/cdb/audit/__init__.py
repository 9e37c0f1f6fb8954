"""``cdb report``: the backtest's figures from the live audit trail, plus rule compliance."""
