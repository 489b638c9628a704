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

{{/*
Whether a monitoring object is rendered: "true" if so. Called with
(dict "root" $ "enabled" <its enabled value> "kind" <its kind, or "" for the dashboard>).
`true` always, `false` never, `auto` when the cluster serves monitoring.coreos.com/v1/<kind>. A
cluster lists each kind of the group; `helm template --api-versions monitoring.coreos.com/v1`
lists only the group/version, which then stands for all of the group's kinds. Without a kind,
`auto` means the group is served at all.
*/}}
{{- define "cairn-operator.monitoring.on" -}}
{{- $enabled := toString .enabled -}}
{{- $caps := .root.Capabilities.APIVersions -}}
{{- $gv := "monitoring.coreos.com/v1" -}}
{{- if eq $enabled "true" -}}
true
{{- else if eq $enabled "auto" -}}
{{- $kindsListed := false -}}
{{- range list "Prometheus" "Alertmanager" "PodMonitor" "ServiceMonitor" "Probe" "PrometheusRule" "ThanosRuler" -}}
{{- if $caps.Has (printf "%s/%s" $gv .) -}}{{- $kindsListed = true -}}{{- end -}}
{{- end -}}
{{- if .kind -}}
{{- if or ($caps.Has (printf "%s/%s" $gv .kind)) (and ($caps.Has $gv) (not $kindsListed)) -}}true{{- end -}}
{{- else if $caps.Has $gv -}}
true
{{- end -}}
{{- else if ne $enabled "false" -}}
{{- fail (printf "monitoring: enabled must be auto, true or false, not %q" $enabled) -}}
{{- end -}}
{{- end -}}

{{/* Whether the operator's ServiceMonitor is rendered (it scrapes the metrics Service). */}}
{{- define "cairn-operator.monitoring.serviceMonitorOn" -}}
{{- $sm := .Values.monitoring.serviceMonitor -}}
{{- if include "cairn-operator.monitoring.on" (dict "root" . "enabled" $sm.enabled "kind" "ServiceMonitor") -}}
{{- if .Values.metrics.service.enabled -}}
true
{{- else if eq (toString $sm.enabled) "true" -}}
{{- fail "monitoring.serviceMonitor.enabled=true needs metrics.service.enabled=true (it scrapes that Service)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of a monitoring object: the chart's, then monitoring.labels, then its own (.labels). */}}
{{- define "cairn-operator.monitoring.labels" -}}
{{- $labels := fromYaml (include "cairn-operator.labels" .root) -}}
{{- $labels = mergeOverwrite $labels (deepCopy (.root.Values.monitoring.labels | default dict)) (deepCopy (.labels | default dict)) -}}
{{- toYaml $labels -}}
{{- end -}}
