"""What the operator does to the Kubernetes API, machine-readable, for the chart's RBAC.

``API_USAGE`` lists every (API group, resource, verbs) the operator needs: its own calls
(:mod:`cdb_operator.apply`) and kopf's (watching TradingBots and children, patching its
annotations, posting Events). The tests derive the real usage from the requests the
handlers make against kmock, check it is covered here, and check the Helm chart's
ClusterRole grants all of it. ``request_rule`` maps one HTTP request to its RBAC rule.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from cdb_operator import model

_CHILD_VERBS = ("get", "list", "watch", "create", "patch", "delete")

#: (API group, resource) → verbs. "" is the core group.
API_USAGE: dict[tuple[str, str], tuple[str, ...]] = {
    (model.GROUP, model.PLURAL): ("get", "list", "watch", "patch"),
    (model.GROUP, f"{model.PLURAL}/status"): ("get", "patch", "update"),
    # ownerReferences with blockOwnerDeletion need update on the owner's finalizers.
    (model.GROUP, f"{model.PLURAL}/finalizers"): ("update",),
    ("", "configmaps"): _CHILD_VERBS,
    ("", "services"): _CHILD_VERBS,
    ("", "persistentvolumeclaims"): _CHILD_VERBS,
    # Secrets: the generated passwords are created and extended, never deleted; the
    # credentials Secret is only read.
    ("", "secrets"): ("get", "list", "watch", "create", "patch"),
    ("", "events"): ("create", "patch"),
    ("apps", "deployments"): _CHILD_VERBS,
    ("apps", "statefulsets"): _CHILD_VERBS,
    ("batch", "cronjobs"): _CHILD_VERBS,
    # restore Jobs (spec.restore): made once, followed, never changed or deleted
    ("batch", "jobs"): ("get", "list", "watch", "create"),
    ("networking.k8s.io", "networkpolicies"): _CHILD_VERBS,
    ("networking.k8s.io", "ingresses"): _CHILD_VERBS,
    ("monitoring.coreos.com", "servicemonitors"): _CHILD_VERBS,
    ("policy", "poddisruptionbudgets"): _CHILD_VERBS,
}

#: Only with ``--cloudnativepg`` (chart value ``operator.cloudnativepg.enabled``): the
#: CloudNativePG Clusters of bots in ``postgres.mode: cloudnativepg``.
CNPG_USAGE: dict[tuple[str, str], tuple[str, ...]] = {
    ("postgresql.cnpg.io", "clusters"): _CHILD_VERBS,
}

#: Only with ``--peering NAME`` (kopf's peering CRDs must be installed).
PEERING_USAGE: dict[tuple[str, str], tuple[str, ...]] = {
    ("kopf.dev", "kopfpeerings"): ("get", "list", "watch", "patch"),
    ("kopf.dev", "clusterkopfpeerings"): ("get", "list", "watch", "patch"),
}


def usage_rules() -> list[dict[str, object]]:
    """API_USAGE as Kubernetes PolicyRules (for docs and charts)."""
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": list(verbs)}
        for (group, resource), verbs in sorted(API_USAGE.items())
    ]


def request_rule(method: str, path: str, query: str = "") -> tuple[str, str, str] | None:
    """(verb, group, resource[/subresource]) of a request; ``None`` for discovery and /version."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    watching = parse_qs(query).get("watch", ["false"])[0] in ("true", "1")
    verb = {
        "GET": "get" if name else ("watch" if watching else "list"),
        "POST": "create",
        "PATCH": "patch",
        "PUT": "update",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method)
    if verb is None:
        return None
    return verb, group, resource


def covered(rule: tuple[str, str, str], grants: dict[tuple[str, str], tuple[str, ...]]) -> bool:
    verb, group, resource = rule
    verbs = grants.get((group, resource), ())
    return verb in verbs or "*" in verbs
