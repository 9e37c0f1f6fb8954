{{/*
The operator's API calls as RBAC rules: exactly cdb_operator.rbac.API_USAGE (and CNPG_USAGE
with operator.cloudnativepg.enabled), nothing more
(tests/test_chart_rbac.py compares them both ways). The operator runs without kopf peering
(one replica, Recreate), so kopf.dev peering objects are not granted.
*/}}

{{/* Rules for the namespaces holding TradingBots and their children. */}}
{{- define "cdb.namespacedRules" -}}
# TradingBots: watched and annotated by kopf; status written explicitly.
- apiGroups: ["claire-de-binare.dev"]
  resources: ["tradingbots"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["claire-de-binare.dev"]
  resources: ["tradingbots/status"]
  verbs: ["get", "patch", "update"]
# ownerReferences with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: ["claire-de-binare.dev"]
  resources: ["tradingbots/finalizers"]
  verbs: ["update"]
# Children owned by a TradingBot: created, patched when they drift, deleted when disabled.
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Secrets: generated passwords are created and extended, never deleted; credentials only read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies", "ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- if .Values.operator.cloudnativepg.enabled }}
# postgres.mode cloudnativepg (cdb_operator.rbac.CNPG_USAGE): only when enabled.
- apiGroups: ["postgresql.cnpg.io"]
  resources: ["clusters"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/* Cluster-scoped rules (a YAML list; empty: the operator needs none). */}}
{{- define "cdb.clusterRules" -}}
[]
{{- end }}
