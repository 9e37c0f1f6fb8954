-- depends: 0001_initial
-- strategy_params held a copy of the default settings that nothing read: the strategy's and
-- the risk manager's parameters are their settings (environment / TradingBot spec), one
-- source of truth. The table is dropped so no one trusts a copy that can disagree.
-- (metrics stays: the risk manager writes the equity history into it, RISK_EQUITY_HISTORY_S.)
DROP TABLE IF EXISTS strategy_params;
