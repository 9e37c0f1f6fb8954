"""Event contracts: limits from the design, and the committed schema matches the models."""

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdb.events import (
    EVENT_TYPES,
    Alert,
    Control,
    MarketData,
    Order,
    OrderResult,
    Signal,
    dump_event,
    json_schema,
    parse_event,
    stable_id,
)

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "market_data": dict(symbol="BTC_USDT", price=100.0, volume=5e5, pct_change=4.5, interval="1m"),
    "market_status": dict(status="unreachable", reason="timeout"),
    "signal": dict(
        signal_id="s1",
        symbol="BTC_USDT",
        side="BUY",
        confidence=0.45,
        price=100.0,
        pct_change=4.5,
        reason="Momentum: +4.5% (threshold 3.0%)",
    ),
    "ml_signal": dict(
        signal_id="m1",
        symbol="BTC_USDT",
        side="BUY",
        probability=0.71,
        threshold=0.6,
        model_version="lr-0123456789ab",
        price=100.0,
        rule_signal=False,
        contributions=[{"feature": "ret_window", "value": 2.5, "contribution": 0.8}],
    ),
    "order": dict(
        client_id="abc123",
        symbol="BTC_USDT",
        side="BUY",
        quantity=0.5,
        price=100.0,
        stop_loss=98.0,
        signal_id="s1",
    ),
    "order_result": dict(
        client_id="abc123",
        symbol="BTC_USDT",
        side="BUY",
        status="FILLED",
        filled_quantity=0.5,
        avg_price=100.1,
        fee=0.05,
    ),
    "alert": dict(
        level="CRITICAL",
        code="DRAWDOWN",
        message="daily loss limit exceeded",
        context={"drawdown_pct": 5.2},
    ),
    "health": dict(service="signal", status="ok"),
    "control": dict(action="engage_breaker", reason="manual", source="operator"),
    "breaker_state": dict(engaged=True, manual=True, reason="manual"),
}


def test_every_type_has_a_good_example():
    assert set(GOOD) == set(EVENT_TYPES)


@pytest.mark.parametrize("type_", sorted(GOOD))
def test_round_trip_json(type_):
    event = EVENT_TYPES[type_](**GOOD[type_])
    again = parse_event(dump_event(event))
    assert again == event
    assert isinstance(again.timestamp, int)


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (MarketData, "symbol", "BTC/USDT"),
        (MarketData, "symbol", "btc_usdt"),
        (MarketData, "price", 0),
        (MarketData, "price", -1.0),
        (MarketData, "price", math.nan),
        (MarketData, "price", math.inf),
        (MarketData, "volume", -0.1),
        (MarketData, "interval", "2m"),
        (Signal, "confidence", 1.01),
        (Signal, "side", "HOLD"),
        (Signal, "reason", "x" * 201),
        (Order, "quantity", 0),
        (Order, "client_id", "x" * 33),
        (OrderResult, "status", "DONE"),
        (Alert, "level", "DEBUG"),
        (Control, "action", "withdraw"),
        (Control, "source", "stranger"),
    ],
)
def test_limits_are_enforced(cls, field, value):
    type_ = cls.model_fields["type"].default
    with pytest.raises(ValidationError) as info:
        cls(**{**GOOD[type_], field: value})
    assert field in str(info.value)


def test_unknown_fields_and_types_are_rejected():
    with pytest.raises(ValidationError):
        MarketData(**GOOD["market_data"], extra_field=1)
    with pytest.raises(ValidationError):
        parse_event(json.dumps({"type": "teleport", "timestamp": 1}))
    with pytest.raises(ValidationError):
        parse_event(b"{not json")


def test_timestamp_is_unix_seconds_int():
    with pytest.raises(ValidationError):
        MarketData(**GOOD["market_data"], timestamp=1.5)
    assert MarketData(**GOOD["market_data"], timestamp=1700000000).timestamp == 1700000000


def test_stable_id_is_deterministic_and_short():
    assert stable_id("momentum", "BTC_USDT", 1) == stable_id("momentum", "BTC_USDT", 1)
    assert stable_id("momentum", "BTC_USDT", 1) != stable_id("momentum", "BTC_USDT", 2)
    assert len(stable_id("x")) <= 32


def test_committed_schema_matches_models():
    committed = json.loads((ROOT / "docs" / "EVENT_SCHEMA.json").read_text())
    assert committed == json_schema(), "docs/EVENT_SCHEMA.json is stale: run `cdb schema`"
    assert committed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_validates_examples_and_rejects_bad_ones():
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    for type_, fields in GOOD.items():
        validator.validate(json.loads(dump_event(EVENT_TYPES[type_](**fields))))
    bad = {**GOOD["market_data"], "type": "market_data", "timestamp": 1, "price": -1}
    assert not validator.is_valid(bad)


def test_cdb_schema_writes_identical_file(tmp_path):
    from cdb.cli import main

    out = tmp_path / "EVENT_SCHEMA.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert out.read_bytes() == (ROOT / "docs" / "EVENT_SCHEMA.json").read_bytes()


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("signal", "reason", "a\x00b"),
        ("alert", "message", "\x00"),
        ("alert", "context", {"k": "v\x00"}),
        ("alert", "context", {"k\x00": 1}),
        ("alert", "context", {"k": [float("nan")]}),
        ("alert", "context", {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}),
        ("health", "details", {"k": "x" * 1001}),
    ],
)
def test_free_text_and_mappings_are_storable(type_, field, value):
    """No NUL (PostgreSQL cannot store it), no NaN, bounded size and depth."""
    with pytest.raises(ValidationError):
        EVENT_TYPES[type_](**{**GOOD[type_], field: value})
