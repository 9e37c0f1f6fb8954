-- depends: 0001_initial
-- The ML advisor's shadow signals (stream ml_signals, event ml_signal): every ML decision is kept
-- with the model version, the probability and the threshold it was compared with, whether the
-- momentum rule fired on the same observation, and the features that pushed it (contributions,
-- largest first). Nothing that trades reads this table; `cdb ml report` and people do.
CREATE TABLE ml_signals (
    id             BIGSERIAL PRIMARY KEY,
    signal_id      TEXT NOT NULL UNIQUE,
    ts             BIGINT NOT NULL,
    symbol         TEXT NOT NULL,
    side           TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    probability    DOUBLE PRECISION NOT NULL CHECK (probability BETWEEN 0 AND 1),
    threshold      DOUBLE PRECISION NOT NULL CHECK (threshold BETWEEN 0 AND 1),
    model_version  TEXT NOT NULL,
    price          DOUBLE PRECISION NOT NULL CHECK (price > 0),
    rule_signal    BOOLEAN NOT NULL,
    contributions  JSONB NOT NULL DEFAULT '[]',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ml_signals_symbol_ts ON ml_signals (symbol, ts);
CREATE INDEX ml_signals_model_ts ON ml_signals (model_version, ts);
