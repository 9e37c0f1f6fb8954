"""The signal engine: turns ``market_data`` into ``signal`` events through pluggable strategies."""
