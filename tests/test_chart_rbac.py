"""The chart's RBAC grants exactly the operator's published API usage, and nothing more.

``cdb_operator.rbac.API_USAGE`` is the operator's own, machine-readable list of its API
calls (the operator's tests check it against the requests its handlers really make); here
the rendered Roles/ClusterRoles must grant exactly that set, no wildcard, nothing
cluster-scoped, and with ``operator.watchNamespaces`` nothing cluster-wide at all.
"""

from __future__ import annotations

from typing import Any

from k8s_tools import helm_template

from cdb_operator.main import _run_parser
from cdb_operator.rbac import API_USAGE, CNPG_USAGE

ROLE_KINDS = ("ClusterRole", "Role")
BINDING_KINDS = ("ClusterRoleBinding", "RoleBinding")
#: Verbs and resources that would let the operator widen its own rights or reach nodes.
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection"}
DANGEROUS_RESOURCES = {
    "*",
    "clusterroles",
    "clusterrolebindings",
    "roles",
    "rolebindings",
    "nodes",
    "pods/exec",
    "pods/attach",
    "serviceaccounts/token",
    "customresourcedefinitions",
    "namespaces",
    "persistentvolumes",
    "certificatesigningrequests",
}


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples a list of PolicyRules grants."""
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def usage(extra: dict | None = None) -> set[tuple[str, str, str]]:
    published = {**API_USAGE, **(extra or {})}
    return {(g, r, v) for (g, r), verbs in published.items() for v in verbs}


def objs(kind: str, rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in rendered if o["kind"] == kind]


def test_cluster_wide_rules_equal_the_operators_api_usage():
    rendered = helm_template()
    roles = objs("ClusterRole", rendered)
    assert objs("Role", rendered) == []
    granted = set().union(*(grants(r["rules"]) for r in roles))
    assert granted == usage(), (
        f"granted but unused: {sorted(granted - usage())}; "
        f"used but not granted: {sorted(usage() - granted)}"
    )


def test_cloudnativepg_clusters_only_when_the_chart_enables_that_mode():
    assert not any(g == "postgresql.cnpg.io" for g, _, _ in usage())
    for values, extra in (
        ({}, None),
        ({"operator": {"cloudnativepg": {"enabled": True}}}, CNPG_USAGE),
    ):
        rendered = helm_template(values)
        granted = set().union(*(grants(r["rules"]) for r in objs("ClusterRole", rendered)))
        assert granted == usage(extra)
        (deployment,) = objs("Deployment", rendered)
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert ("--cloudnativepg" in args) is (extra is not None)
        assert _run_parser().parse_args(args).cloudnativepg is (extra is not None)


def test_no_wildcards_escalation_or_cluster_scoped_resources():
    for values in ({}, {"operator": {"watchNamespaces": ["a", "b"]}}):
        for role in objs("ClusterRole", helm_template(values)) + objs(
            "Role", helm_template(values)
        ):
            for rule in role["rules"]:
                assert "nonResourceURLs" not in rule
                assert "*" not in rule["apiGroups"]
                assert not set(rule["verbs"]) & DANGEROUS_VERBS, rule
                assert not set(rule["resources"]) & DANGEROUS_RESOURCES, rule


def test_secrets_are_never_deleted():
    granted = set().union(*(grants(r["rules"]) for r in objs("ClusterRole", helm_template())))
    assert ("", "secrets", "create") in granted
    assert ("", "secrets", "delete") not in granted


def test_bindings_name_only_the_operators_service_account():
    rendered = helm_template()
    sa = objs("ServiceAccount", rendered)[0]["metadata"]
    bindings = objs("ClusterRoleBinding", rendered)
    assert bindings
    role_names = {r["metadata"]["name"] for r in objs("ClusterRole", rendered)}
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]
        assert b["roleRef"]["kind"] == "ClusterRole"
        assert b["roleRef"]["name"] in role_names


def test_watched_namespaces_get_roles_and_nothing_cluster_wide():
    rendered = helm_template({"operator": {"watchNamespaces": ["trading", "staging"]}})
    assert objs("ClusterRole", rendered) == []
    assert objs("ClusterRoleBinding", rendered) == []
    roles = {r["metadata"]["namespace"]: r for r in objs("Role", rendered)}
    bindings = {b["metadata"]["namespace"]: b for b in objs("RoleBinding", rendered)}
    assert set(roles) == set(bindings) == {"trading", "staging"}
    for ns, role in roles.items():
        assert grants(role["rules"]) == usage()
        binding = bindings[ns]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"][0]["namespace"] == "cdb-system"


def test_two_releases_do_not_share_cluster_roles():
    # ClusterRoles are cluster-scoped: their names carry the release namespace, so the same
    # release name in two namespaces does not overwrite the other's grants.
    a = {o["metadata"]["name"] for o in objs("ClusterRole", helm_template(namespace="one"))}
    b = {o["metadata"]["name"] for o in objs("ClusterRole", helm_template(namespace="two"))}
    assert a and b and not a & b


def test_rbac_can_be_left_to_someone_else():
    rendered = helm_template({"rbac": {"create": False}})
    for kind in ROLE_KINDS + BINDING_KINDS:
        assert objs(kind, rendered) == []
