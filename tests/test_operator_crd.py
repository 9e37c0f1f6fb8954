"""The CRD: generated from the model, structural, and enforcing what the docs promise.

The examples are validated the way the API server would: defaults applied from the
schema, then the OpenAPI v3.0 schema checked (draft 4 semantics, with unknown fields
rejected as ``kubectl --validate=strict`` does), then every CEL rule evaluated with
cel-python. Each CEL rule has a bad spec here that it must reject, naming the field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml

from cdb_operator import crd, model
from cdb_operator.main import main as operator_main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("tradingbot-*.yaml"))
SCHEMA = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
_CEL = celpy.Environment()


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected (a CRD prunes them; we want typos caught)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        if "properties" in schema and "metadata" in schema["properties"]:
            out["properties"]["metadata"] = {"type": "object"}
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def cel_rules(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (JSON path of the node, rule) in the schema."""
    out = [(path, rule) for rule in schema.get("x-kubernetes-validations", [])]
    for key, sub in (schema.get("properties") or {}).items():
        out += cel_rules(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        out += cel_rules(schema["items"], f"{path}[]")
    return out


def node_at(value: Any, path: str) -> list[Any]:
    """The values at a rule's path (several under arrays, none where absent)."""
    nodes = [value]
    for part in [p for p in path.split(".") if p]:
        many = part.endswith("[]")
        key = part.removesuffix("[]")
        nxt = []
        for node in nodes:
            if isinstance(node, dict) and key in node:
                nxt.extend(node[key] if many else [node[key]])
        nodes = nxt
    return nodes


def typed(schema: dict[str, Any], value: Any) -> Any:
    """Values as CEL sees them on the API server: ``type: number`` is a double even if 50."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        return {
            k: typed(props.get(k) or (extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [typed(schema["items"], v) for v in value]
    return value


def cel_errors(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """The messages of the CEL rules ``obj`` breaks (transition rules only with ``old``)."""
    obj = typed(SCHEMA, obj)
    old = typed(SCHEMA, old) if old is not None else None
    errors = []
    for path, rule in cel_rules(SCHEMA):
        program = _CEL.program(_CEL.compile(rule["rule"]))
        transition = "oldSelf" in rule["rule"]
        news = node_at(obj, path)
        olds = node_at(old, path) if old is not None else []
        if transition and (len(news) != 1 or len(olds) != 1):
            continue
        for value in news:
            activation = {"self": celpy.json_to_cel(value)}
            if transition:
                activation["oldSelf"] = celpy.json_to_cel(olds[0])
            try:  # the API server reports an evaluation error ("no such key") as a rejection
                result = program.evaluate(activation)
            except celpy.CELEvalError as exc:
                result = exc
            if isinstance(result, celpy.CELEvalError):
                errors.append(f"{rule['message']}: {result.args[0] if result.args else result}")
            elif not bool(result):
                errors.append(rule["message"])
    return errors


def admit(obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    """Default and validate like the API server; raise ValueError naming what is wrong."""
    defaulted = crd.apply_defaults(SCHEMA, copy.deepcopy(obj))
    validator = jsonschema.Draft4Validator(strict(SCHEMA))
    problems = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(defaulted)
    ]
    problems += cel_errors(defaulted, old)
    if problems:
        raise ValueError("; ".join(problems))
    return defaulted


def bot(spec: dict[str, Any], name: str = "demo") -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


# -- generation -----------------------------------------------------------------------------


def test_committed_crd_is_generated_from_the_model() -> None:
    committed = (ROOT / "crds" / "tradingbot.yaml").read_text()
    assert committed == crd.crd_yaml(), "crds/tradingbot.yaml is stale: run `cdb-operator crd`"


def test_crd_check_command_reports_a_stale_file(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tb.yaml"
    assert operator_main(["crd", "--output", str(path)]) == 0
    assert operator_main(["crd", "--check", "--output", str(path)]) == 0
    path.write_text(path.read_text().replace("tradingbots", "tradingbotz"))
    assert operator_main(["crd", "--check", "--output", str(path)]) == 1
    assert "stale" in capsys.readouterr().err


def test_crd_identity_columns_and_status_subresource() -> None:
    doc = crd.crd()
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "tradingbots.claire-de-binare.dev"
    assert spec["names"]["shortNames"] == ["tb"] and spec["scope"] == "Namespaced"
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Mode", "Breaker", "Ready", "Age"} <= columns
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"phase", "observedGeneration", "conditions", "components", "breaker"} <= set(status)
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    breaker = status["breaker"]["properties"]
    assert {"state", "requested", "controlId", "confirmed", "engaged", "engagedBy"} <= set(breaker)


def _walk(node: Any, path: str = "") -> list[tuple[str, dict]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in (node.get("properties") or {}).items():
            out += _walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    """Every node has one type (or is int-or-string / free-form); no refs, no nullable unions."""
    for path, node in _walk(SCHEMA):
        assert "$ref" not in node and "title" not in node, path
        assert not (node.get("properties") and "additionalProperties" in node), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert "anyOf" not in node and "oneOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        if isinstance(node.get("exclusiveMinimum"), bool):
            assert "minimum" in node, path


def test_spec_defaults_match_the_model() -> None:
    """The API server's defaults (from the schema) are the operator's (from pydantic)."""
    defaulted = crd.apply_defaults(SCHEMA, bot({}))["spec"]
    model_view = model.TradingBotSpec().model_dump(by_alias=True, mode="json", exclude_none=True)
    assert defaulted == model_view
    assert defaulted["exchange"]["mode"] == "paper"
    assert defaulted["backup"]["schedule"] == "0 3 * * *"
    assert defaulted["networkPolicy"]["enabled"] is True
    assert defaulted["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert defaulted["circuitBreaker"] == {"engaged": False, "reason": ""}


# -- examples -------------------------------------------------------------------------------


def test_the_three_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} == {
        "tradingbot-minimal.yaml",
        "tradingbot-paper.yaml",
        "tradingbot-live.yaml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_admitted_and_parse_the_same_in_the_operator(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    bots = [d for d in docs if d.get("kind") == model.KIND]
    assert bots, f"{path.name} has no TradingBot"
    for doc in bots:
        defaulted = admit(doc)
        parsed = model.parse_spec(doc.get("spec"))
        assert defaulted["spec"] == parsed.model_dump(by_alias=True, mode="json", exclude_none=True)


def test_live_example_is_live_and_starts_halted() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "tradingbot-live.yaml").read_text())
    spec = admit(doc)["spec"]
    assert spec["exchange"]["mode"] == "live" and spec["exchange"]["credentialsSecret"]
    assert spec["circuitBreaker"]["engaged"] is True


# -- rejection: every CEL rule and the main bounds ------------------------------------------

#: One bad spec per CEL rule (matched by a word of its message) and what must be named.
CEL_CASES = [
    ("credentialsSecret", bot({"exchange": {"mode": "live"}}), "credentialsSecret"),
    (
        "maxPositionPct",
        bot({"risk": {"maxPositionPct": 60, "maxExposurePct": 50}}),
        "maxPositionPct",
    ),
    ("symbols or topMovers", bot({"symbols": [], "topMovers": 0}), "symbols"),
    ("at most 40", bot({}, name="a" * 41), "metadata.name"),
    ("DNS label", bot({}, name="9lives"), "metadata.name"),
    ("advisor.model is required", bot({"advisor": {"enabled": True}}), "advisor.model"),
    (
        "exactly one of configMap",
        bot({"advisor": {"model": {"path": "/m.json", "configMap": {"name": "m"}}}}),
        "advisor.model",
    ),
    ("postgres.external is required", bot({"postgres": {"mode": "external"}}), "external"),
    ("redis.external is required", bot({"redis": {"mode": "external"}}), "external"),
]
EXT_REDIS = {"external": {"host": "redis.example"}}
#: Transition rules: (a word of the message, old spec, new spec).
TRANSITION_CASES = [
    ("redis.storage", {"redis": {"storage": "1Gi"}}, {"redis": {"storage": "2Gi"}}),
    ("postgres.storage", {"postgres": {"storage": "5Gi"}}, {"postgres": {"storage": "9Gi"}}),
    (
        "redis.storageClass",
        {"redis": {"storageClass": "fast"}},
        {"redis": {"storageClass": "slow"}},
    ),
    (
        "postgres.storageClass",
        {"postgres": {"storageClass": "fast"}},
        {"postgres": {"storageClass": "slow"}},
    ),
    ("backup.storage", {"backup": {"storage": "5Gi"}}, {"backup": {"storage": "6Gi"}}),
    ("postgres.mode", {}, {"postgres": {"mode": "cloudnativepg"}}),
    ("redis.mode", {"redis": {"mode": "embedded"}}, {"redis": {"mode": "external", **EXT_REDIS}}),
    (
        "backup.storageClass",
        {"backup": {"storageClass": "a"}},
        {"backup": {"storageClass": "b"}},
    ),
]


@pytest.mark.parametrize(("word", "obj", "field"), CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_each_cel_rule_rejects_its_bad_spec_naming_the_field(
    word: str, obj: dict, field: str
) -> None:
    with pytest.raises(ValueError) as info:
        admit(obj)
    assert word in str(info.value) and field in str(info.value)


@pytest.mark.parametrize(
    ("word", "old", "new"), TRANSITION_CASES, ids=[c[0] for c in TRANSITION_CASES]
)
def test_storage_is_immutable(word: str, old: dict, new: dict) -> None:
    old_obj = crd.apply_defaults(SCHEMA, bot(old))
    admit(bot(old), old=old_obj)  # unchanged is fine
    with pytest.raises(ValueError, match=word.replace(".", r"\.")):
        admit(bot(new), old=old_obj)


def test_every_cel_rule_has_a_rejection_case() -> None:
    """A new rule without a bad spec here fails this test."""
    messages = [rule["message"] for _, rule in cel_rules(SCHEMA)]
    words = [c[0] for c in CEL_CASES] + [c[0] for c in TRANSITION_CASES]
    for message in messages:
        assert any(w in message for w in words), f"no test case for CEL rule: {message}"


def test_valid_live_spec_with_credentials_passes_the_rule() -> None:
    admit(bot({"exchange": {"mode": "live", "credentialsSecret": "keys"}}))
    admit(bot({"symbols": [], "topMovers": 3}))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"exchange": {"mode": "yolo"}}, "exchange.mode"),
        ({"exchange": {"name": "mexcc"}}, "exchange.name"),  # a typo: no such ccxt exchange
        ({"risk": {"maxPositionPct": 0}}, "risk.maxPositionPct"),
        ({"risk": {"maxDailyDrawdownPct": 101}}, "risk.maxDailyDrawdownPct"),
        ({"risk": {"maxOpenPositions": 0}}, "risk.maxOpenPositions"),
        ({"strategy": {"lookbackMinutes": 0}}, "strategy.lookbackMinutes"),
        ({"symbols": ["btc-usdt"]}, "symbols.0"),
        ({"backup": {"retention": 0}}, "backup.retention"),
        ({"backup": {"schedule": "daily"}}, "backup.schedule"),
        ({"monitoring": {"serviceMonitor": "maybe"}}, "monitoring.serviceMonitor"),
        ({"services": {"persistence": {"replicas": 9}}}, "services.persistence.replicas"),
        ({"services": {"risk": {"replicas": 2}}}, "services.risk"),  # no such field: 1 only
        ({"services": {"execution": {"replicas": 2}}}, "services.execution"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
        ({"redis": {"storage": "lots"}}, "redis.storage"),
        ({"services": {"feed": {"resources": {"limits": {"cpu": "1 core"}}}}}, "limits.cpu"),
        ({"tolerations": [{"effect": "Sometimes"}]}, "tolerations.0.effect"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_out_of_bounds_values_are_rejected_by_schema_and_model(spec: dict, field: str) -> None:
    with pytest.raises(ValueError) as info:
        admit(bot(spec))
    assert field.split(".")[-1] in str(info.value)
    with pytest.raises(ValueError):  # pydantic.ValidationError is a ValueError
        model.parse_spec(spec)


def test_exchange_names_are_ccxts_own() -> None:
    import ccxt

    from cdb_operator.exchanges import EXCHANGE_IDS

    assert "mexc" in EXCHANGE_IDS and list(EXCHANGE_IDS) == sorted(set(EXCHANGE_IDS))
    assert not set(EXCHANGE_IDS) - set(ccxt.exchanges), "ids the installed ccxt does not know"
    admit(bot({"exchange": {"name": "kraken"}}))
