{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "order-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it already contains the chart name. */}}
{{- define "order-sync.fullname" -}}
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

{{- define "order-sync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "order-sync.labels" -}}
{{ include "order-sync.commonLabels" . }}
app.kubernetes.io/component: connector
{{- end }}

{{- define "order-sync.commonLabels" -}}
helm.sh/chart: {{ include "order-sync.chart" . }}
{{ include "order-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels of one Deployment's objects (called with dict "root" $ "deployment" item). In split mode
the component names the pipeline, so each Deployment, PDB and autoscaler selects only its own
pods; the default Deployment keeps the selector it always had (a Deployment's selector cannot
change on upgrade).
*/}}
{{- define "order-sync.deploymentLabels" -}}
{{ include "order-sync.commonLabels" .root }}
app.kubernetes.io/component: {{ default "connector" .deployment.pipeline }}
{{- end }}

{{- define "order-sync.deploymentSelectorLabels" -}}
{{ include "order-sync.selectorLabels" .root }}
{{- with .deployment.pipeline }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
The Deployments of this release as YAML {items: [...]}: by default one that runs every pipeline;
with pipelines.split one for the intake and one per enabled platform. Each item has its object
name, its pipeline ("" = all), the consumer groups it reads (KEDA scales on their lag) and its
values: the top-level replicaCount, resources, autoscaling, keda, podDisruptionBudget and extraEnv
with the pipeline's overrides laid over them key by key (extraEnv appended).
*/}}
{{- define "order-sync.deployments" -}}
{{- $fullname := include "order-sync.fullname" . }}
{{- $groupId := .Values.kafka.groupId }}
{{- $base := dict "replicaCount" .Values.replicaCount "resources" .Values.resources "autoscaling" .Values.autoscaling "keda" .Values.keda "podDisruptionBudget" .Values.podDisruptionBudget "extraEnv" .Values.extraEnv }}
{{- $enabled := list }}
{{- range $name, $cfg := .Values.platforms }}{{ if $cfg.enabled }}{{ $enabled = append $enabled $name }}{{ end }}{{ end }}
{{- $items := list }}
{{- if .Values.pipelines.split }}
{{- range $pipeline := prepend $enabled "intake" }}
{{- $values := deepCopy $base }}
{{- range $key, $value := (get $.Values.pipelines.overrides $pipeline | default dict) }}
{{- if eq $key "extraEnv" }}
{{- $_ := set $values $key (concat $.Values.extraEnv $value) }}
{{- else if kindIs "map" $value }}
{{- $section := deepCopy (get $base $key) }}
{{- range $k, $v := $value }}{{ $_ := set $section $k $v }}{{ end }}
{{- $_ := set $values $key $section }}
{{- else }}
{{- $_ := set $values $key $value }}
{{- end }}
{{- end }}
{{- $group := eq $pipeline "intake" | ternary $groupId (printf "%s.%s" $groupId $pipeline) }}
{{- $name := printf "%s-%s" $fullname $pipeline | trunc 63 | trimSuffix "-" }}
{{- $items = append $items (dict "name" $name "pipeline" $pipeline "groups" (list $group) "values" $values) }}
{{- end }}
{{- else }}
{{- $groups := list $groupId }}
{{- range $enabled }}{{ $groups = append $groups (printf "%s.%s" $groupId .) }}{{ end }}
{{- $items = append $items (dict "name" $fullname "pipeline" "" "groups" $groups "values" $base) }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{- define "order-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "order-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "order-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "order-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "order-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read their secret ORDER_SYNC_* variables from. */}}
{{- define "order-sync.secretName" -}}
{{- default (include "order-sync.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Where the CA bundle from kafka.tls.caSecret is mounted. */}}
{{- define "order-sync.kafkaCaDir" -}}
/etc/order-sync/kafka-ca
{{- end }}

{{/* Where the client certificate and key from kafka.tls.clientSecret are mounted. */}}
{{- define "order-sync.kafkaClientDir" -}}
/etc/order-sync/kafka-client
{{- end }}

{{/*
Credential values per platform (camelCase value key -> the connector's setting), all stored in
the Secret. Everything else about a platform is non-secret and goes into the ConfigMap.
*/}}
{{- define "order-sync.platformCredentials" -}}
vucustom: [apiKey, apiSecret]
sellercloud: [username, password]
elasticpath: [clientId, clientSecret]
ventmere: [apiToken, organizationId]
{{- end }}

{{/* ORDER_SYNC_ variable name for a camelCase key: maxConcurrency -> MAX_CONCURRENCY. */}}
{{- define "order-sync.envKey" -}}
{{- . | snakecase | upper }}
{{- end }}

{{/* Pods beyond one need a store they all share: SQLite is a file inside each pod. */}}
{{- define "order-sync.multiReplica" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Render-time checks of combinations the schema cannot express. */}}
{{- define "order-sync.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled both scale the Deployment: enable at most one" }}
{{- end }}
{{- if and (not .Values.existingSecret) (include "order-sync.multiReplica" .) (hasPrefix "sqlite" (lower .Values.idempotency.url)) }}
{{- fail "more than one replica (replicaCount > 1, autoscaling or keda) needs a shared idempotency store: set idempotency.url to a redis:// or postgresql:// URL (SQLite is per pod)" }}
{{- end }}
{{- if and .Values.persistence.existingClaim (include "order-sync.multiReplica" .) }}
{{- fail "persistence.existingClaim holds a single SQLite file: it cannot be shared by more than one replica" }}
{{- end }}
{{- if and (hasPrefix "SASL" .Values.kafka.securityProtocol) (not .Values.kafka.sasl.mechanism) }}
{{- fail "kafka.securityProtocol SASL_* needs kafka.sasl.mechanism" }}
{{- end }}
{{- if and .Values.platforms.ventmere.enabled (not .Values.platforms.ventmere.baseUrl) }}
{{- fail "platforms.ventmere.baseUrl is required when ventmere is enabled" }}
{{- end }}
{{- if and .Values.platforms.sellercloud.enabled (not (or .Values.platforms.sellercloud.baseUrl .Values.platforms.sellercloud.serverId)) }}
{{- fail "platforms.sellercloud.serverId (or baseUrl) is required when sellercloud is enabled" }}
{{- end }}
{{- if .Values.pipelines.split }}
{{- if and (not .Values.existingSecret) (hasPrefix "sqlite" (lower .Values.idempotency.url)) }}
{{- fail "pipelines.split runs the intake and each platform in pods of their own, which must share one idempotency store: set idempotency.url to a redis:// or postgresql:// URL (SQLite is per pod)" }}
{{- end }}
{{- if .Values.persistence.existingClaim }}
{{- fail "persistence.existingClaim holds a single SQLite file: it cannot be shared by the Deployments of pipelines.split" }}
{{- end }}
{{- end }}
{{- range (include "order-sync.deployments" . | fromYaml).items }}
{{- if and .values.autoscaling.enabled .values.keda.enabled }}
{{- fail (printf "autoscaling.enabled and keda.enabled both scale the Deployment %s: enable at most one" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Label matchers of the alert rules: this release's scrape job unless prometheusRule.selector says otherwise. */}}
{{- define "order-sync.alertSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "job=%q, namespace=%q" (include "order-sync.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}
