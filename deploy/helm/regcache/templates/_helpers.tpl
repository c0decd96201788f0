{{/* The release's objects are named after it: "regcache" for a release of that name. */}}
{{- define "regcache.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What selects the proxy's pods: the app and the release, so two releases never mix. */}}
{{- define "regcache.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "regcache.labels" -}}
{{ include "regcache.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "regcache.nodeSetupSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-node-setup
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "regcache.nodeSetupLabels" -}}
{{ include "regcache.nodeSetupSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "regcache.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
