{{/*
The chart's name, truncated at 63 characters (the DNS label limit of some fields).
*/}}
{{- define "incident-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified app name: the release name, with the chart's name unless the release name
already holds it. Truncated at 63 characters.
*/}}
{{- define "incident-bridge.fullname" -}}
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

{{/*
The chart label: name and version.
*/}}
{{- define "incident-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: never change between upgrades (a Deployment's selector is immutable).
*/}}
{{- define "incident-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incident-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "incident-bridge.labels" -}}
helm.sh/chart: {{ include "incident-bridge.chart" . }}
{{ include "incident-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "incident-bridge.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "incident-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incident-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, the tag defaulting to the chart's appVersion; a digest wins.
*/}}
{{- define "incident-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The Secret holding the tokens: the existing one, or the one this chart makes.
*/}}
{{- define "incident-bridge.secretName" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else }}
{{- include "incident-bridge.fullname" . }}
{{- end }}
{{- end }}

{{/*
The rule files: name -> content, from .Values.rules.files (the chart's files matching the
glob) and .Values.rules.inline (a map of file name -> YAML, a string or a mapping). Inline
files win over chart files of the same name.
*/}}
{{- define "incident-bridge.ruleFiles" -}}
{{- $files := dict }}
{{- if .Values.rules.files }}
{{- range $path, $_ := .Files.Glob .Values.rules.files }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- range $name, $content := .Values.rules.inline }}
{{- if kindIs "string" $content }}
{{- $_ := set $files $name $content }}
{{- else }}
{{- $_ := set $files $name (toYaml $content) }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
Whether any rule file is given (then a ConfigMap is mounted as the rules folder).
*/}}
{{- define "incident-bridge.hasRules" -}}
{{- if (include "incident-bridge.ruleFiles" . | fromYaml) }}true{{ end }}
{{- end }}

{{/*
Checks that fail the render with a message, before anything is applied.
*/}}
{{- define "incident-bridge.validate" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount is %d, but incident-bridge keeps its store in one SQLite file that only one process may open (a second one is refused at start by the lock beside the database): set replicaCount to 1 (or 0 to stop it)." (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.webhookToken }}
{{- fail "auth.webhookToken and auth.existingSecret are both set: give the token in the existing Secret (key auth.existingSecretKeys.webhookToken) or in values, not both." }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.apiToken }}
{{- fail "auth.apiToken and auth.existingSecret are both set: give the token in the existing Secret (key auth.existingSecretKeys.apiToken) or in values, not both." }}
{{- end }}
{{- end }}
