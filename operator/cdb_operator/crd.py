"""Generate the TradingBot CRD from the pydantic models, and apply its defaults like the API server.

pydantic emits JSON Schema 2020-12 with ``$ref`` and ``anyOf [X, null]``; a CRD needs a
*structural* OpenAPI v3.0 schema: everything inlined, one type per node, nullable
optionals dropped to plain optionals, numeric ``exclusiveMinimum`` turned into the
boolean form, and ``default: {}`` on every object whose fields all have defaults (so the
API server fills nested defaults even when the user omits the whole object).
``crds/tradingbot.yaml`` is this module's output; a test fails when it is stale.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from cdb_operator import model

CRD_PATH = Path("crds") / "tradingbot.yaml"
_DROP = {"title", "examples", "additionalProperties", "$defs"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**_inline(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
            return _inline(merged, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Turn one inlined pydantic schema node into a structural OpenAPI v3.0 node."""
    node = dict(node)
    any_of = node.get("anyOf")
    if any_of and not node.get("x-kubernetes-int-or-string"):
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**non_null[0], **rest}
        if node.get("default", "x") is None:
            del node["default"]
    if node.get("default", "x") is None:
        del node["default"]
    additional = node.get("additionalProperties")
    out: dict[str, Any] = {k: v for k, v in node.items() if k not in _DROP}
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out["minimum" if bound == "exclusiveMinimum" else "maximum"] = out[bound]
            out[bound] = True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if out.get("x-kubernetes-preserve-unknown-fields"):
        return out
    if out.get("type") == "object":
        props = out.get("properties")
        if props:
            out["properties"] = {k: _structural(v) for k, v in props.items()}
        elif isinstance(additional, dict):
            out["additionalProperties"] = _structural(additional)
    if out.get("type") == "array" and "items" in out:
        out["items"] = _structural(out["items"])
    return out


class _WithFactoryDefaults(GenerateJsonSchema):
    """Emit ``default_factory`` values as defaults (pydantic leaves them out).

    A factory that is a model class itself becomes ``{}`` (the API server then fills the
    nested defaults); any other factory's value is dumped by alias.
    """

    def default_schema(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()
            if isinstance(factory, type) and issubclass(factory, BaseModel):
                value = {}
            elif isinstance(value, BaseModel):
                value = value.model_dump(by_alias=True, mode="json", exclude_none=True)
            schema = {k: v for k, v in schema.items() if k != "default_factory"}
            schema["default"] = value
        return super().default_schema(schema)


def model_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of one model, by alias (camelCase)."""
    raw = cls.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults
    )
    return _structural(_inline(raw, raw.get("$defs", {})))


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def status_schema() -> dict[str, Any]:
    """Status is written only by the operator: declared in full, but never defaulted."""
    schema = _without_defaults(model_schema(model.TradingBotStatus))
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def spec_schema() -> dict[str, Any]:
    return model_schema(model.TradingBotSpec)


#: Names longer than this would overflow the 63-character limit of the names derived from them
#: (``NAME-persistence`` Services, ``NAME-postgres-0`` pods with their revision hash label).
MAX_NAME_LENGTH = 40

ROOT_RULES = [
    {
        "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
        "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
        "(the child objects' names are derived from it)",
    },
    {
        "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "message": "metadata.name must be a DNS label starting with a letter (it names Services)",
    },
]


def root_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A complete Claire de Binare trading system.",
        "x-kubernetes-validations": ROOT_RULES,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    columns = [
        {"name": "Mode", "type": "string", "jsonPath": ".spec.exchange.mode"},
        {"name": "Breaker", "type": "string", "jsonPath": ".status.breaker.state"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "Data",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="MarketData")].reason',
        },
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{model.PLURAL}.{model.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "claire-de-binare"},
        },
        "spec": {
            "group": model.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": model.KIND,
                "listKind": f"{model.KIND}List",
                "plural": model.PLURAL,
                "singular": model.SINGULAR,
                "shortNames": list(model.SHORT_NAMES),
                "categories": ["claire-de-binare"],
            },
            "versions": [
                {
                    "name": model.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": root_schema()},
                }
            ],
        },
    }


HEADER = "# Generated by `cdb-operator crd` from operator/cdb_operator/model.py; do not edit.\n"


def crd_yaml() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)


def write(path: Path = CRD_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(crd_yaml())
    return path


# -- defaulting, as the API server does it ------------------------------------------------------


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Return ``value`` with the schema's defaults filled in, the way the API server does.

    A missing property with a default gets a copy of it, then defaulting recurses into
    it, so ``default: {}`` on an object yields all of its nested defaults.
    """
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties") or {}
        out = dict(value)
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in out:
                if key not in props:
                    out[key] = apply_defaults(extra, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value
