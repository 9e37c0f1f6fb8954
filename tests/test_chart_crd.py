"""The chart's CRD is the repository's CRD: same file, and the same object once rendered.

``crds/tradingbot.yaml`` is generated from the operator's model; the chart templates its
copy in ``files/crds/`` (``sync-crd.sh`` copies it). Rendering adds only Helm's labels
and the keep annotation.
"""

from __future__ import annotations

import copy

import yaml
from k8s_tools import CHART_DIR, REPO, helm_template

SOURCE = REPO / "crds" / "tradingbot.yaml"
CHART_COPY = CHART_DIR / "files" / "crds" / "tradingbot.yaml"
FIX = "run charts/claire-de-binare/sync-crd.sh"


def test_chart_copy_is_byte_identical_to_crds():
    assert SOURCE.is_file(), f"{SOURCE} is missing (the operator's CRD generator writes it)"
    assert CHART_COPY.read_bytes() == SOURCE.read_bytes(), f"the chart's CRD is stale: {FIX}"


def test_rendered_crd_equals_the_chart_copy_but_for_helm_metadata():
    source = yaml.safe_load(CHART_COPY.read_text())
    rendered = next(o for o in helm_template() if o["kind"] == "CustomResourceDefinition")
    meta = rendered["metadata"]
    assert meta["name"] == source["metadata"]["name"]
    assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
    # Every label and annotation of the source survives; Helm's are added.
    assert source["metadata"].get("labels", {}).items() <= meta["labels"].items()
    assert source["metadata"].get("annotations", {}).items() <= meta["annotations"].items()
    # Everything else is the same object, value for value. Helm's fromYaml/toYaml round trip
    # turns every number into a float64, so 3.0 may come back as 3 (the same JSON number);
    # anything else (a string for a number, a lost key, a changed rule) fails.
    stripped = copy.deepcopy(rendered)
    stripped["metadata"] = source["metadata"]
    assert _json_types(stripped) == _json_types(source)
    assert stripped == source


def _json_types(node):
    """The tree with every leaf replaced by its JSON type (int and float are both number)."""
    if isinstance(node, dict):
        return {k: _json_types(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_json_types(v) for v in node]
    if isinstance(node, bool):
        return "boolean"
    if isinstance(node, int | float):
        return "number"
    return type(node).__name__
