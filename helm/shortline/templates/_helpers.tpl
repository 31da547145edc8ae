{{/* Chart name ("shortline" unless nameOverride). */}}
{{- define "shortline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: the release name when it already contains the chart name
     (release "shortline" gives shortline-api, the names k8s/ uses), else <release>-<name>. */}}
{{- define "shortline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select a component's pods (never change these on a live release). */}}
{{- define "shortline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shortline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels. */}}
{{- define "shortline.labels" -}}
{{ include "shortline.selectorLabels" . }}
app.kubernetes.io/part-of: shortline
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Pod template labels. */}}
{{- define "shortline.podLabels" -}}
{{ include "shortline.selectorLabels" . }}
app.kubernetes.io/part-of: shortline
{{- end }}

{{/* image reference of a service: {{ include "shortline.image" (dict "root" . "svc" .Values.api) }} */}}
{{- define "shortline.image" -}}
{{- printf "%s:%s" .svc.image.repository (default .root.Chart.AppVersion .root.Values.image.tag) }}
{{- end }}

{{/* The Secret and key holding DATABASE_URL. */}}
{{- define "shortline.databaseSecretName" -}}
{{- if .Values.postgres.bundled -}}
{{ include "shortline.fullname" . }}-db-app
{{- else if .Values.postgres.external.existingSecret -}}
{{ .Values.postgres.external.existingSecret }}
{{- else -}}
{{ include "shortline.fullname" . }}-database
{{- end }}
{{- end }}

{{- define "shortline.databaseSecretKey" -}}
{{- if .Values.postgres.bundled -}}
uri
{{- else if .Values.postgres.external.existingSecret -}}
{{ .Values.postgres.external.existingSecretKey }}
{{- else -}}
DATABASE_URL
{{- end }}
{{- end }}

{{/* The Secret holding the NATS and Valkey passwords (credentials.yaml makes it unless
     credentials.existingSecret names one). */}}
{{- define "shortline.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "shortline.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/* Whether anything bundled needs the credentials Secret. */}}
{{- define "shortline.needsCredentials" -}}
{{- if or .Values.nats.bundled .Values.valkey.bundled }}true{{ end }}
{{- end }}

{{- define "shortline.natsUrl" -}}
{{- if .Values.nats.bundled -}}
nats://{{ include "shortline.fullname" . }}-nats:4222
{{- else -}}
{{ required "nats.external.url is required when nats.bundled is false" .Values.nats.external.url }}
{{- end }}
{{- end }}

{{- define "shortline.valkeyUrl" -}}
{{- if .Values.valkey.bundled -}}
redis://{{ include "shortline.fullname" . }}-valkey:6379
{{- else -}}
{{ .Values.valkey.external.url }}
{{- end }}
{{- end }}

{{/* The config and DATABASE_URL every service container (and init container) gets. */}}
{{- define "shortline.commonEnv" -}}
envFrom:
  - configMapRef: { name: {{ include "shortline.fullname" . }}-config }
env:
  - name: DATABASE_URL
    valueFrom: { secretKeyRef: { name: {{ include "shortline.databaseSecretName" . }}, key: {{ include "shortline.databaseSecretKey" . }} } }
{{- end }}

{{/* Probes of the three services: readiness /ready, liveness /health. */}}
{{- define "shortline.probes" -}}
readinessProbe:
  httpGet: { path: /ready, port: http }
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
livenessProbe:
  httpGet: { path: /health, port: http }
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
startupProbe:
  httpGet: { path: /health, port: http }
  periodSeconds: 2
  failureThreshold: 30
{{- end }}
