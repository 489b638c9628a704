{{- define "cairn-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cairn-operator.labels" -}}
app.kubernetes.io/name: cairn-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cairn-operator.selectorLabels" -}}
app.kubernetes.io/name: cairn-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cairn-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cairn-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped names carry the namespace, so releases in several namespaces do not collide. */}}
{{- define "cairn-operator.rbacName" -}}
{{- if .Values.namespaceScoped -}}
{{- include "cairn-operator.fullname" . -}}
{{- else -}}
{{- printf "%s-%s" (include "cairn-operator.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
