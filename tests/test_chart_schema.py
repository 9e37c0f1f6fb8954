"""values.schema.json: a bad value stops `helm template`/`helm lint` and names the field.

Each case is a value a person could plausibly type; Helm must refuse it before rendering,
with the JSON pointer of the field in the message, so nothing half-valid reaches a cluster.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from k8s_tools import CHART_DIR, helm

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())

#: (values, the field Helm must name, a phrase of the reason)
BAD_VALUES = [
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", "Always"),
    ({"image": {"repository": "Not A Repo"}}, "/image/repository", "pattern"),
    ({"image": {"digest": "latest"}}, "/image/digest", "pattern"),
    ({"image": {"tag": "has spaces"}}, "/image/tag", "pattern"),
    ({"crds": {"install": "yes"}}, "/crds/install", "boolean"),
    ({"operator": {"replicas": 2}}, "/operator", "replicas"),
    ({"operator": {"healthPort": 80}}, "/operator/healthPort", "1,024"),
    ({"operator": {"healthPort": "8080"}}, "/operator/healthPort", "integer"),
    ({"operator": {"verbose": "yes"}}, "/operator/verbose", "boolean"),
    ({"operator": {"metricsPort": 80}}, "/operator/metricsPort", "1,024"),
    ({"operator": {"watchNamespaces": ["Trading"]}}, "/operator/watchNamespaces/0", "pattern"),
    ({"operator": {"watchNamespaces": ["a", "a"]}}, "/operator/watchNamespaces", "equal"),
    (
        {"operator": {"resources": {"requests": {"memory": "lots"}}}},
        "/operator/resources/requests/memory",
        "",
    ),
    ({"operator": {"resources": {"limit": {}}}}, "/operator/resources", "limit"),
    ({"operator": {"extraEnv": [{"value": "x"}]}}, "/operator/extraEnv/0", "name"),
    ({"bot": {"spec": {"exchange": {"mode": "live"}}}}, "/bot/spec/exchange/mode", "paper"),
    ({"bot": {"name": "My_Bot"}}, "/bot/name", "pattern"),
    ({"bot": {"name": "1st-bot"}}, "/bot/name", "pattern"),
    ({"bot": {"name": "b" * 41}}, "/bot/name", "maxLength"),
    ({"monitoring": {"serviceMonitor": {"mode": "on"}}}, "/monitoring/serviceMonitor/mode", "auto"),
    (
        {"monitoring": {"serviceMonitor": {"interval": "30 seconds"}}},
        "/monitoring/serviceMonitor/interval",
        "pattern",
    ),
    (
        {"monitoring": {"dashboard": {"labels": {"grafana_dashboard": 1}}}},
        "/monitoring/dashboard/labels/grafana_dashboard",
        "string",
    ),
    ({"serviceAcount": {"create": False}}, "", "serviceAcount"),
]


def _ids():
    return [case[1] or case[2] for case in BAD_VALUES]


@pytest.mark.parametrize(("values", "field", "reason"), BAD_VALUES, ids=_ids())
def test_helm_refuses_a_bad_value_and_names_the_field(tmp_path, values, field, reason):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    for command in ("template", "lint"):
        args = ["template", "cdb"] if command == "template" else ["lint", "--strict"]
        proc = helm(*args, str(CHART_DIR), "-f", str(path), check=False)
        assert proc.returncode != 0, f"helm {command} accepted {values}"
        message = proc.stderr + proc.stdout
        assert f"at '{field}'" in message, message
        assert reason in message, message


def test_the_defaults_satisfy_the_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), SCHEMA)


def test_every_value_has_a_schema_with_a_description():
    """A value nobody described is a value nobody can check: walk values.yaml and the schema."""

    def walk(values, schema, path):
        if not isinstance(values, dict) or schema.get("additionalProperties") is not False:
            return  # a leaf, or an open map (labels, bot.spec: the CRD checks that one)
        for key, value in values.items():
            assert key in schema["properties"], f"{path}/{key} is not in values.schema.json"
            sub = schema["properties"][key]
            if sub.get("additionalProperties") is not False:
                assert sub.get("description"), f"{path}/{key} has no description"
            walk(value, sub, f"{path}/{key}")

    walk(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), SCHEMA, "")
