"""The operator's real API usage, derived from its requests, is what it publishes and the chart grants.

A full life cycle (create, spec change with pruning, breaker, a child deleted and
restored, live credentials, delete) runs against kmock; every request the operator (kopf
and our client) makes is mapped to its RBAC (verb, group, resource). Each must be listed
in ``cdb_operator.rbac.API_USAGE`` and granted by the Helm chart's rendered Roles.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_operator_handlers import (
    BOT,
    NS,
    TEST_AGENT,
    declare,
    eventually,
    has_all_children,
    running_operator,
)

from cdb_operator import model
from cdb_operator.rbac import API_USAGE, covered, request_rule


def observed_rules(kmock: Any) -> set[tuple[str, str, str]]:
    rules = set()
    for request in list(kmock):
        if request.headers.get("User-Agent") == TEST_AGENT:
            continue
        rule = request_rule(str(request.method.value), request.url.path, request.url.query_string)
        if rule is not None:
            rules.add(rule)
    return rules


def test_request_rule_mapping() -> None:
    assert request_rule("GET", "/api/v1/namespaces/a/secrets/x") == ("get", "", "secrets")
    assert request_rule("GET", "/apis/apps/v1/namespaces/a/deployments") == (
        "list",
        "apps",
        "deployments",
    )
    assert request_rule("GET", "/apis/apps/v1/deployments", "watch=true") == (
        "watch",
        "apps",
        "deployments",
    )
    assert request_rule(
        "PATCH", f"/apis/{model.API_VERSION}/namespaces/a/tradingbots/b/status"
    ) == (
        "patch",
        model.GROUP,
        "tradingbots/status",
    )
    assert request_rule("POST", "/api/v1/namespaces/a/events") == ("create", "", "events")
    assert request_rule("GET", "/apis/monitoring.coreos.com/v1") is None  # discovery
    assert request_rule("GET", "/version") is None


@pytest.mark.asyncio
async def test_every_request_of_a_full_life_cycle_is_published_and_granted(
    kmock: Any, redis_env: dict[str, str]
) -> None:
    declare(kmock, monitoring=True)
    async with running_operator(kmock, int(redis_env["REDIS_PORT"])) as c:
        await c.create_bot(
            {
                "exchange": {"mode": "live", "credentialsSecret": "keys"},
                "circuitBreaker": {"engaged": True},
            }
        )
        await eventually(
            lambda: c.condition("Degraded").get("reason") == "CredentialsSecretMissing"
        )
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys", "namespace": NS},
            "stringData": {"MEXC_API_KEY": "k", "MEXC_API_SECRET": "s"},
        }
        await c.call("POST", f"/api/v1/namespaces/{NS}/secrets", secret)
        await eventually(lambda: has_all_children(c), timeout=40)
        await eventually(lambda: c.live("ServiceMonitor", f"{BOT}-metrics"))
        await eventually(c.controls)
        await c.call("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{BOT}-risk")
        await eventually(lambda: c.live("Deployment", f"{BOT}-risk"))
        await c.call(
            "PATCH",
            f"/api/v1/namespaces/{NS}/configmaps/{BOT}-config",
            {"data": {"LOG_LEVEL": "ERROR"}},
            content_type="application/merge-patch+json",
        )
        await eventually(
            lambda: c.live("ConfigMap", f"{BOT}-config")["data"]["LOG_LEVEL"] == "INFO"
        )
        await c.patch_spec(
            {"networkPolicy": {"enabled": False}, "monitoring": {"serviceMonitor": "disabled"}}
        )
        await eventually(lambda: not c.kinds().get("networkpolicies"))
        await eventually(lambda: c.live("ServiceMonitor", f"{BOT}-metrics") is None)
        await c.call("DELETE", f"/apis/{model.API_VERSION}/namespaces/{NS}/tradingbots/{BOT}")
    rules = observed_rules(kmock)
    # the life cycle really exercised the interesting calls
    assert {
        ("create", "apps", "deployments"),
        ("list", "", "configmaps"),
        ("patch", "", "configmaps"),
        ("delete", "networking.k8s.io", "networkpolicies"),
        ("delete", "monitoring.coreos.com", "servicemonitors"),
        ("patch", model.GROUP, "tradingbots/status"),
        ("watch", model.GROUP, model.PLURAL),
        ("create", "", "events"),
        ("get", "", "secrets"),
    } <= rules
    missing = sorted(r for r in rules if not covered(r, API_USAGE))
    assert not missing, f"requests not listed in cdb_operator.rbac.API_USAGE: {missing}"


def chart_grants() -> dict[tuple[str, str], tuple[str, ...]]:
    from k8s_tools import helm_template

    out: dict[tuple[str, str], set[str]] = {}
    for obj in helm_template({}):
        if obj.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in obj.get("rules") or []:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    out.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return {k: tuple(v) for k, v in out.items()}


def test_the_chart_grants_everything_the_operator_publishes() -> None:
    grants = chart_grants()
    lacking = sorted(
        (verb, group, resource)
        for (group, resource), verbs in API_USAGE.items()
        for verb in verbs
        if not covered((verb, group, resource), grants)
    )
    assert not lacking, f"the chart's RBAC does not grant: {lacking}"
