-- Initial schema: the design's tables, the audit trail that explains every trade.
-- Applied by yoyo-migrations (`cdb db migrate`); never edit an applied migration, add a new one.
-- Timestamps are Unix seconds (BIGINT), like the events they come from; created_at is the row's
-- own insertion time. Every table written from a stream has a natural unique key, so a
-- redelivered entry adds no row (ON CONFLICT DO NOTHING).

CREATE TABLE signals (
    id          BIGSERIAL PRIMARY KEY,
    signal_id   TEXT NOT NULL UNIQUE,
    ts          BIGINT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    confidence  DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    price       DOUBLE PRECISION NOT NULL CHECK (price > 0),
    pct_change  DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL,
    strategy    TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX signals_symbol_ts ON signals (symbol, ts);
CREATE INDEX signals_ts ON signals (ts);

CREATE TABLE orders (
    id                 BIGSERIAL PRIMARY KEY,
    client_id          TEXT NOT NULL UNIQUE CHECK (length(client_id) <= 32),
    signal_id          TEXT,
    ts                 BIGINT NOT NULL,
    symbol             TEXT NOT NULL,
    side               TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity           DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    price              DOUBLE PRECISION,
    stop_loss          DOUBLE PRECISION,
    take_profit        DOUBLE PRECISION,
    reason             TEXT NOT NULL DEFAULT '',
    -- NEW (recorded, not yet sent), SENT (outcome unknown), then the order_result status
    status             TEXT NOT NULL DEFAULT 'NEW',
    mode               TEXT NOT NULL DEFAULT 'paper',
    exchange_order_id  TEXT,
    filled_quantity    DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_price          DOUBLE PRECISION NOT NULL DEFAULT 0,
    fee                DOUBLE PRECISION NOT NULL DEFAULT 0,
    error              TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_symbol_ts ON orders (symbol, ts);
CREATE INDEX orders_ts ON orders (ts);
CREATE INDEX orders_signal ON orders (signal_id);

CREATE TABLE order_results (
    id                 BIGSERIAL PRIMARY KEY,
    client_id          TEXT NOT NULL UNIQUE,
    ts                 BIGINT NOT NULL,
    symbol             TEXT NOT NULL,
    side               TEXT NOT NULL,
    status             TEXT NOT NULL,
    filled_quantity    DOUBLE PRECISION NOT NULL,
    avg_price          DOUBLE PRECISION NOT NULL,
    fee                DOUBLE PRECISION NOT NULL,
    error              TEXT,
    exchange_order_id  TEXT,
    mode               TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX order_results_symbol_ts ON order_results (symbol, ts);

CREATE TABLE trades (
    id          BIGSERIAL PRIMARY KEY,
    trade_id    TEXT NOT NULL UNIQUE,
    client_id   TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    price       DOUBLE PRECISION NOT NULL CHECK (price > 0),
    fee         DOUBLE PRECISION NOT NULL DEFAULT 0,
    realized_pnl DOUBLE PRECISION NOT NULL DEFAULT 0,
    mode        TEXT NOT NULL DEFAULT 'paper',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX trades_symbol_ts ON trades (symbol, ts);
CREATE INDEX trades_client ON trades (client_id);

CREATE TABLE positions (
    symbol       TEXT PRIMARY KEY,
    quantity     DOUBLE PRECISION NOT NULL DEFAULT 0,
    avg_price    DOUBLE PRECISION NOT NULL DEFAULT 0,
    stop_loss    DOUBLE PRECISION,
    take_profit  DOUBLE PRECISION,
    realized_pnl DOUBLE PRECISION NOT NULL DEFAULT 0,
    opened_ts    BIGINT,
    updated_ts   BIGINT NOT NULL,
    mode         TEXT NOT NULL DEFAULT 'paper'
);

CREATE TABLE balances (
    asset       TEXT PRIMARY KEY,
    free        DOUBLE PRECISION NOT NULL,
    locked      DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_ts  BIGINT NOT NULL,
    mode        TEXT NOT NULL DEFAULT 'paper'
);

CREATE TABLE risk_events (
    id          BIGSERIAL PRIMARY KEY,
    event_key   TEXT NOT NULL UNIQUE,
    ts          BIGINT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    decision    TEXT NOT NULL,
    rule        TEXT NOT NULL,
    description TEXT NOT NULL,
    signal_id   TEXT,
    client_id   TEXT,
    symbol      TEXT,
    context     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX risk_events_ts ON risk_events (ts);
CREATE INDEX risk_events_symbol_ts ON risk_events (symbol, ts);

CREATE TABLE alerts (
    id          BIGSERIAL PRIMARY KEY,
    stream_id   TEXT NOT NULL UNIQUE,
    ts          BIGINT NOT NULL,
    level       TEXT NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT '',
    context     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alerts_ts ON alerts (ts);

CREATE TABLE health_checks (
    id          BIGSERIAL PRIMARY KEY,
    stream_id   TEXT NOT NULL UNIQUE,
    ts          BIGINT NOT NULL,
    service     TEXT NOT NULL,
    status      TEXT NOT NULL,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX health_checks_service_ts ON health_checks (service, ts);

CREATE TABLE metrics (
    id          BIGSERIAL PRIMARY KEY,
    ts          BIGINT NOT NULL,
    name        TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    labels      JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX metrics_name_ts ON metrics (name, ts);

CREATE TABLE strategy_params (
    name         TEXT PRIMARY KEY,
    value        TEXT NOT NULL,
    description  TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO strategy_params (name, value, description) VALUES
    ('SIGNAL_THRESHOLD_PCT', '3.0', 'Momentum: minimum pct_change for a BUY signal'),
    ('SIGNAL_MIN_VOLUME', '100000', 'Momentum: minimum volume over the lookback window'),
    ('SIGNAL_LOOKBACK_MIN', '15', 'Minutes over which pct_change and volume are measured'),
    ('MAX_POSITION_PCT', '10', 'Largest single position, percent of equity (clipped)'),
    ('MAX_EXPOSURE_PCT', '50', 'Largest total exposure, percent of equity'),
    ('STOP_LOSS_PCT', '2', 'Stop loss distance below the entry price, percent'),
    ('MAX_DAILY_DRAWDOWN_PCT', '5', 'Daily drawdown that trips the circuit breaker, percent'),
    ('MAX_OPEN_POSITIONS', '5', 'Largest number of open positions');

-- Key/value state a service must keep across restarts (e.g. the risk manager's breaker).
CREATE TABLE service_state (
    service     TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (service, key)
);

CREATE TABLE webpush_subscriptions (
    endpoint    TEXT PRIMARY KEY,
    keys        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
