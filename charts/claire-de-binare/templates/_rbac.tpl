{{/*
The operator's API calls, as RBAC rules. Keep this in step with the operator's own list of
API usage (tests/test_chart_rbac.py compares them): every verb here is one the operator uses.
*/}}

{{/* Rules for the namespaces holding TradingBots and their children. */}}
{{- define "cdb.namespacedRules" -}}
- apiGroups: ["claire-de-binare.dev"]
  resources: ["tradingbots"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["claire-de-binare.dev"]
  resources: ["tradingbots/status"]
  verbs: ["get", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "secrets", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["cronjobs", "jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end }}

{{/* Cluster-scoped rules (a YAML list; empty when the operator needs none). */}}
{{- define "cdb.clusterRules" -}}
[]
{{- end }}
