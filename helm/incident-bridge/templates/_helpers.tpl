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
Whether the store is PostgreSQL: database.url or database.existingSecret is set. Empty for
SQLite (the default), whose manifests do not depend on the database block at all.
*/}}
{{- define "incident-bridge.postgresql" -}}
{{- with .Values.database }}{{ if or .url .existingSecret }}true{{ end }}{{ end }}
{{- end }}

{{/*
Whether the values or extraEnv already say where postmortems go (KB_DIR or KB_DATABASE_ONLY):
then the chart does not choose for them on PostgreSQL.
*/}}
{{- define "incident-bridge.kbChosen" -}}
{{- range $name, $_ := .Values.config }}
{{- if has ($name | upper) (list "KB_DIR" "KB_DATABASE_ONLY") }}true{{ end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if has .name (list "INCIDENT_BRIDGE_KB_DIR" "INCIDENT_BRIDGE_KB_DATABASE_ONLY") }}true{{ end }}
{{- end }}
{{- end }}

{{/*
Checks that fail the render with a message, before anything is applied.
*/}}
{{- define "incident-bridge.validate" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if gt $replicas 1 }}
{{- if not (include "incident-bridge.postgresql" .) }}
{{- fail (printf "replicaCount is %d, but incident-bridge keeps its store in one SQLite file that only one process may open (a second one is refused at start by the lock beside the database): set replicaCount to 1 (or 0 to stop it), or put the store in PostgreSQL (database.*, docs/ha.md)." $replicas) }}
{{- end }}
{{- /* Every replica must take the same tokens. One generated by the chart is read back from
the Secret by helm install/upgrade, but `helm template` (GitOps) draws a new one at each
render, and pods started from two renders would disagree. */}}
{{- if not .Values.auth.existingSecret }}
{{- if not .Values.auth.apiToken }}
{{- fail (printf "replicaCount is %d: every replica must take the same API token, so it cannot be generated by the chart (a new one at each render without a cluster). Set auth.apiToken, or auth.existingSecret with the key auth.existingSecretKeys.apiToken (docs/ha.md)." $replicas) }}
{{- end }}
{{- if not .Values.auth.webhookToken }}
{{- fail (printf "replicaCount is %d: every replica must take the same webhook token, so it cannot be generated by the chart (a new one at each render without a cluster). Set auth.webhookToken, or auth.existingSecret with the key auth.existingSecretKeys.webhookToken (docs/ha.md)." $replicas) }}
{{- end }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (not .maxUnavailable) (or (kindIs "float64" .minAvailable) (kindIs "int64" .minAvailable)) (ge (int .minAvailable) $replicas) }}
{{- fail (printf "podDisruptionBudget.minAvailable is %d with replicaCount %d: no pod could ever be evicted, so node drains would hang. Set it below replicaCount." (int .minAvailable) $replicas) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* SIGTERM: --shutdown-delay, then at most --shutdown-timeout for the requests in flight,
then up to 10 s for the sends in flight, then the store; the kubelet's SIGKILL must not come
first. */}}
{{- $stop := add (int .Values.shutdown.delaySeconds) (int .Values.shutdown.timeoutSeconds) 15 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $stop) }}
{{- fail (printf "terminationGracePeriodSeconds is %d, less than shutdown.delaySeconds + shutdown.timeoutSeconds + 15 = %d: the kubelet would kill the pod before it finishes its requests and sends in flight (docs/ha.md)." (int .Values.terminationGracePeriodSeconds) (int $stop)) }}
{{- end }}
{{- with .Values.database }}
{{- if .url }}
{{- if not (regexMatch "^postgres(ql)?://" .url) }}
{{- fail "database.url must start with postgresql:// (or postgres://): leave it empty for SQLite (persistence.*)." }}
{{- end }}
{{- /* The URL is a plain value of the pod spec: whoever may read the Deployment would read a password in it. */}}
{{- if or (regexMatch "^postgres(ql)?://[^/@]*:[^/@]*@" .url) (regexMatch "[?&]password=" .url) }}
{{- fail "database.url holds a password, which would be readable in the Deployment: put the URL in a Secret (database.existingSecret, key database.urlKey) or the password alone (database.passwordKey)." }}
{{- end }}
{{- end }}
{{- if and .passwordKey (not .existingSecret) }}
{{- fail "database.passwordKey is set without database.existingSecret: name the Secret that holds the password." }}
{{- end }}
{{- if and .existingSecret (not .url) (not .urlKey) }}
{{- fail "database.existingSecret is set but database.urlKey is empty: name the Secret's key that holds the URL (CloudNativePG's is uri), or give database.url." }}
{{- end }}
{{- if and .existingSecret .url (not .passwordKey) }}
{{- fail "database.existingSecret is set, but the URL comes from database.url and database.passwordKey is empty, so the Secret would not be used: set database.passwordKey, or leave database.url empty to read the URL from the Secret." }}
{{- end }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.webhookToken }}
{{- fail "auth.webhookToken and auth.existingSecret are both set: give the token in the existing Secret (key auth.existingSecretKeys.webhookToken) or in values, not both." }}
{{- end }}
{{- if and .Values.auth.existingSecret .Values.auth.apiToken }}
{{- fail "auth.apiToken and auth.existingSecret are both set: give the token in the existing Secret (key auth.existingSecretKeys.apiToken) or in values, not both." }}
{{- end }}
{{- end }}
