{{/* The release's name for everything it makes. */}}
{{- define "gridwatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gridwatch.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: gridwatch.selector (dict "ctx" $ "component" "detector") */}}
{{- define "gridwatch.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gridwatch.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/*
The config file as the services read it: the user's `config`, with what the chart owns laid
over it (listen addresses inside the pod, the secret files' mount paths, the state cache).
*/}}
{{- define "gridwatch.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $kafka := get $c "kafka" | default dict -}}
{{- if .Values.secrets.kafkaPassword.secretName -}}
{{- $_ := set $kafka "sasl_password_file" "/var/run/secrets/gridwatch/kafka/password" -}}
{{- end -}}
{{- $_ := set $c "kafka" $kafka -}}
{{- $ing := get $c "ingester" | default dict -}}
{{- $_ := set $ing "listen" (printf "0.0.0.0:%v" .Values.ingester.port) -}}
{{- if .Values.secrets.apiKeys.secretName -}}
{{- $_ := set $ing "api_keys_file" "/var/run/secrets/gridwatch/api-keys/keys" -}}
{{- end -}}
{{- $_ := set $c "ingester" $ing -}}
{{- $det := get $c "detector" | default dict -}}
{{- $_ := set $det "metrics_listen" (printf "0.0.0.0:%v" .Values.detector.metricsPort) -}}
{{- $_ := set $det "state_dir" "/var/lib/gridwatch/state" -}}
{{- $_ := set $c "detector" $det -}}
{{- $sink := get $c "sink" | default dict -}}
{{- $_ := set $sink "metrics_listen" (printf "0.0.0.0:%v" .Values.sink.metricsPort) -}}
{{- $_ := set $sink "out" "/var/lib/gridwatch/out" -}}
{{- $_ := set $c "sink" $sink -}}
{{- include "gridwatch.tomlTable" (dict "path" "" "table" $c) -}}
{{- end -}}

{{/*
TOML written here, not with toToml: values from YAML are float64 to Helm, and toToml writes
`partitions = 12.0`, which gridwatch refuses for an integer key. A whole number is written as an
integer, anything else as it is.
*/}}
{{- define "gridwatch.tomlValue" -}}
{{- if kindIs "string" . -}}{{ . | quote }}
{{- else if kindIs "bool" . -}}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) -}}
{{- if eq (float64 .) (float64 (int64 .)) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "gridwatch.tomlValue" $v }}{{ end }}]
{{- else -}}
{{- fail (printf "config: %v (%s) cannot be written to gridwatch.toml" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* A table and its subtables: gridwatch.tomlTable (dict "path" "" "table" $map) */}}
{{- define "gridwatch.tomlTable" -}}
{{- $path := .path -}}
{{- if $path }}
[{{ $path }}]
{{- end }}
{{- range $k, $v := .table }}
{{- if not (kindIs "map" $v) }}
{{ $k | quote }} = {{ include "gridwatch.tomlValue" $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{ include "gridwatch.tomlTable" (dict "path" (ternary ($k | quote) (printf "%s.%s" $path ($k | quote)) (eq $path "")) "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The pod parts every service shares: the config and secret volumes and mounts. */}}
{{- define "gridwatch.volumes" -}}
- name: config
  configMap:
    name: {{ include "gridwatch.fullname" . }}
{{- if .Values.secrets.kafkaPassword.secretName }}
- name: kafka-password
  secret:
    secretName: {{ .Values.secrets.kafkaPassword.secretName }}
    items:
      - key: {{ .Values.secrets.kafkaPassword.key }}
        path: password
{{- end }}
{{- end -}}

{{- define "gridwatch.mounts" -}}
- name: config
  mountPath: /etc/gridwatch
  readOnly: true
{{- if .Values.secrets.kafkaPassword.secretName }}
- name: kafka-password
  mountPath: /var/run/secrets/gridwatch/kafka
  readOnly: true
{{- end }}
{{- end -}}

{{- define "gridwatch.env" -}}
- name: GRIDWATCH_CONFIG
  value: /etc/gridwatch/gridwatch.toml
- name: GRIDWATCH_LOG_FORMAT
  value: json
{{- end -}}
