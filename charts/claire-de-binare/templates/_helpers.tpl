{{/* Names, labels and small pieces shared by every template. */}}

{{- define "cdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix: release-chart, or just the release when it already contains the chart name. */}}
{{- define "cdb.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's objects: Deployment, Service, ServiceAccount, RBAC. */}}
{{- define "cdb.operatorName" -}}
{{- printf "%s-operator" (include "cdb.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "cdb.labels" -}}
helm.sh/chart: {{ include "cdb.chart" . }}
{{ include "cdb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: claire-de-binare
{{- end }}

{{- define "cdb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's labels and its pods' selector. app.kubernetes.io/name is "cdb-operator" whatever
the overrides: every TradingBot's NetworkPolicy admits pods with exactly that label (from
the operator's namespace) to the bot's Redis, which carries the circuit breaker's control
events (cdb_operator.render.network.OPERATOR_POD_LABELS; a test keeps the two in step).
*/}}
{{- define "cdb.operatorLabels" -}}
helm.sh/chart: {{ include "cdb.chart" . }}
{{ include "cdb.operatorSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: claire-de-binare
{{- end }}

{{- define "cdb.operatorSelectorLabels" -}}
app.kubernetes.io/name: cdb-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "cdb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdb.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image tag: the value, or the chart's appVersion. */}}
{{- define "cdb.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* The operator's image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "cdb.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "cdb.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Whether to render the operator's ServiceMonitor ("true" or ""): only when it serves metrics. */}}
{{- define "cdb.serviceMonitorEnabled" -}}
{{- $mode := .Values.monitoring.serviceMonitor.mode }}
{{- if not (gt (int .Values.operator.metricsPort) 0) }}
{{- else if eq $mode "enabled" }}true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true
{{- end }}
{{- end }}

{{/* Whether to render the PrometheusRule with the bots' alerts ("true" or ""). */}}
{{- define "cdb.prometheusRuleEnabled" -}}
{{- $mode := .Values.monitoring.prometheusRule.mode }}
{{- if eq $mode "enabled" }}true
{{- else if and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true
{{- end }}
{{- end }}


{{/* cdb-operator's arguments: kopf's health endpoint and the namespaces to watch. */}}
{{- define "cdb.operatorArgs" -}}
- --liveness=http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- if eq (int .Values.operator.readinessPort) (int .Values.operator.healthPort) }}
{{- fail "operator.readinessPort must differ from operator.healthPort" }}
{{- end }}
- --readiness=http://0.0.0.0:{{ .Values.operator.readinessPort }}/readyz
{{- if gt (int .Values.operator.metricsPort) 0 }}
{{- if eq (int .Values.operator.metricsPort) (int .Values.operator.healthPort) }}
{{- fail "operator.metricsPort must differ from operator.healthPort" }}
{{- end }}
{{- if eq (int .Values.operator.metricsPort) (int .Values.operator.readinessPort) }}
{{- fail "operator.metricsPort must differ from operator.readinessPort" }}
{{- end }}
- --metrics-port={{ .Values.operator.metricsPort }}
{{- end }}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- if .Values.operator.cloudnativepg.enabled }}
- --cloudnativepg
{{- end }}
{{- if .Values.operator.watchNamespaces }}
{{- range .Values.operator.watchNamespaces }}
- --namespace={{ . }}
{{- end }}
{{- else }}
- --all-namespaces
{{- end }}
{{- range .Values.operator.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
