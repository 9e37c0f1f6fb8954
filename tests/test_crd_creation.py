"""The CRD as the API server checks it when it is *created* (``kubectl apply -f crds/``).

At CRD creation (apiextensions-apiserver, ``schema/defaulting/validation.go``) every
``default`` is validated exactly as written: against the schema of its node, then every
``x-kubernetes-validations`` rule of that node and below is evaluated on it, with the
default as both ``self`` and ``oldSelf``. Nested defaults are *not* applied first, so a
rule reading a key that ``default: {}`` lacks fails with "no such key" and the whole CRD
is rejected. This module emulates exactly that with cel-python, for the CRD file in
``crds/`` and the chart's copy (they must be the same bytes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from test_operator_crd import cel_rules, node_at, typed

ROOT = Path(__file__).resolve().parents[1]
CRD_FILES = [
    ROOT / "crds" / "tradingbot.yaml",
    ROOT / "charts" / "claire-de-binare" / "files" / "crds" / "tradingbot.yaml",
]
_CEL = celpy.Environment()


def schema_of(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes_with_defaults(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict]]:
    """Every (path, schema node) that declares a ``default``, anywhere in the tree."""
    out = [(path, schema)] if "default" in schema else []
    for key, sub in (schema.get("properties") or {}).items():
        out += nodes_with_defaults(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out += nodes_with_defaults(schema[key], f"{path}[]" if key == "items" else path)
    return out


def evaluate(rule: str, value: Any, old: Any) -> str | None:
    """None when the rule holds; else why not (false, or the evaluation error)."""
    program = _CEL.program(_CEL.compile(rule))
    activation = {"self": celpy.json_to_cel(value)}
    if "oldSelf" in rule:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError as exc:
        return f"{exc.args[0] if exc.args else exc} evaluating rule: {rule}"
    if isinstance(result, celpy.CELEvalError):
        return f"{result.args[0] if result.args else result} evaluating rule: {rule}"
    return None if bool(result) else f"rule is false: {rule}"


def creation_errors(schema: dict[str, Any]) -> list[str]:
    """What the API server says about the CRD's defaults, as it says it (empty: admitted)."""
    errors = []
    for path, node in nodes_with_defaults(schema):
        default = node["default"]  # exactly as written: no nested defaulting
        where = f"openAPIV3Schema{path}.default"
        for error in jsonschema.Draft4Validator(node).iter_errors(default):
            errors.append(f"{where}: {error.message}")
        value = typed(node, default)
        for rule_path, rule in cel_rules(node):
            for found in node_at(value, rule_path):
                problem = evaluate(rule["rule"], found, found)
                if problem:
                    errors.append(f"{where}{rule_path}: {rule['message']}: {problem}")
    return errors


@pytest.mark.parametrize("path", CRD_FILES, ids=["crds", "chart"])
def test_every_rule_holds_on_every_default_as_written(path: Path) -> None:
    """The CRD would be rejected at creation if any default broke or crashed a rule."""
    schema = schema_of(path)
    assert nodes_with_defaults(schema), "no defaults found: the walk is broken"
    assert creation_errors(schema) == []


def test_chart_copy_is_the_same_crd() -> None:
    crds, chart = (p.read_text() for p in CRD_FILES)
    assert crds == chart, "run charts/claire-de-binare/sync-crd.sh"


def test_the_emulation_rejects_an_unguarded_rule_on_a_bare_default() -> None:
    """What the API server said about the first CRD: the emulation must say it too."""
    schema = {
        "type": "object",
        "properties": {
            "exchange": {
                "type": "object",
                "default": {},
                "x-kubernetes-validations": [
                    {"rule": "self.mode != 'live' || has(self.secret)", "message": "m"}
                ],
                "properties": {
                    "mode": {"type": "string", "default": "paper"},
                    "secret": {"type": "string"},
                },
            }
        },
    }
    errors = creation_errors(schema)
    assert len(errors) == 1 and "mode" in errors[0] and ".exchange.default" in errors[0]
    rule = schema["properties"]["exchange"]["x-kubernetes-validations"][0]
    rule["rule"] = "!has(self.mode) || self.mode != 'live' || has(self.secret)"
    assert creation_errors(schema) == []
    schema["properties"]["exchange"]["default"] = {"mode": 3}
    assert any("is not of type 'string'" in e for e in creation_errors(schema))


@pytest.mark.parametrize("path", CRD_FILES[:1], ids=["crds"])
def test_every_spec_rule_is_guarded_against_absent_keys(path: Path) -> None:
    """Any spec rule evaluated on an empty object never errors on an absent key.

    It may still reject the empty object ("exactly one of …" on a field without a
    default: the API server only evaluates defaults as written, checked above).
    """
    spec = schema_of(path)["properties"]["spec"]
    for rule_path, rule in cel_rules(spec):
        if "oldSelf" in rule["rule"]:
            continue  # transition rules compare whole values, never read keys
        problem = evaluate(rule["rule"], {}, {})
        assert problem is None or problem.startswith("rule is false"), f"spec{rule_path}: {problem}"
