{{/*
Names, labels and the pieces every role's pod shares.
*/}}

{{- define "syncroot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Cut to 40 characters so "<fullname>-dlq-worker-metrics" stays within 63. */}}
{{- define "syncroot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "syncroot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The roles: values key → `syncroot` subcommand (also the resource name suffix). */}}
{{- define "syncroot.roles" -}}
api: api
forwarder: forwarder
delivery: delivery
webhooks: webhooks
dlqWorker: dlq-worker
subscriptions: subscriptions
{{- end -}}

{{- define "syncroot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncroot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "syncroot.labels" -}}
helm.sh/chart: {{ include "syncroot.chart" . }}
{{ include "syncroot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: syncroot
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "api"). */}}
{{- define "syncroot.componentLabels" -}}
{{ include "syncroot.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "syncroot.componentSelectorLabels" -}}
{{ include "syncroot.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "syncroot.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "syncroot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "syncroot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "syncroot.secretName" -}}
{{- default (include "syncroot.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* "true" when config.crms names the CRM: (dict "root" $ "crm" "hubspot"). */}}
{{- define "syncroot.crmEnabled" -}}
{{- $crms := splitList "," (.root.Values.config.crms | default "" | toString | replace " " "") -}}
{{- if has .crm $crms -}}true{{- end -}}
{{- end -}}

{{/* A config value as the environment sees it: numbers without exponent, booleans as words. */}}
{{- define "syncroot.configValue" -}}
{{- if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- int64 . | toString -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "syncroot.webhookPublicUrl" -}}
{{- if .Values.config.webhook_public_url -}}
{{- .Values.config.webhook_public_url -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := (first .Values.ingress.hosts).host -}}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.ingress.tls))) $host -}}
{{- end -}}
{{- end -}}

{{/*
The credentials: values key → environment variable, which roles get it, and when it is
required. A role receives only the credentials it uses.
*/}}
{{- define "syncroot.secretTable" -}}
databaseUrl: {env: SYNCROOT_DATABASE_URL, roles: [api, forwarder, delivery, webhooks, dlq-worker, subscriptions, migrate], required: always}
amqpUrl: {env: SYNCROOT_AMQP_URL, roles: [api, forwarder, delivery, webhooks, dlq-worker], required: always}
apiKeys: {env: SYNCROOT_API_KEYS, roles: [api], required: always}
readKeys: {env: SYNCROOT_READ_KEYS, roles: [api], required: never}
adminKeys: {env: SYNCROOT_ADMIN_KEYS, roles: [api], required: never}
hubspotWebhookSecrets: {env: SYNCROOT_HUBSPOT_WEBHOOK_SECRETS, roles: [api], required: never}
salesforceWebhookSecrets: {env: SYNCROOT_SALESFORCE_WEBHOOK_SECRETS, roles: [api], required: never}
hubspotToken: {env: SYNCROOT_HUBSPOT_TOKEN, roles: [delivery, webhooks], required: hubspot}
salesforceClientSecret: {env: SYNCROOT_SALESFORCE_CLIENT_SECRET, roles: [delivery, webhooks], required: salesforce}
alertUrl: {env: SYNCROOT_ALERT_URL, roles: [dlq-worker], required: never}
{{- end -}}

{{/* Whether a credential must be present: (dict "root" $ "required" "hubspot"). */}}
{{- define "syncroot.secretRequired" -}}
{{- if eq .required "always" -}}true
{{- else if ne .required "never" -}}{{ include "syncroot.crmEnabled" (dict "root" .root "crm" .required) }}
{{- end -}}
{{- end -}}

{{/* The credentials of one role as env entries: (dict "root" $ "role" "api"). */}}
{{- define "syncroot.secretEnv" -}}
{{- $root := .root -}}
{{- $role := .role -}}
{{- $table := include "syncroot.secretTable" . | fromYaml -}}
{{- range $key := keys $table | sortAlpha }}
{{- $entry := get $table $key -}}
{{- $secretKey := get $root.Values.secrets.keys $key -}}
{{- $required := include "syncroot.secretRequired" (dict "root" $root "required" $entry.required) -}}
{{- if and (has $role $entry.roles) $secretKey }}
{{- if or $root.Values.secrets.existingSecret (get $root.Values.secrets.fromValues $key) }}
- name: {{ $entry.env }}
  valueFrom:
    secretKeyRef:
      name: {{ if and (eq $role "migrate") (eq $root.Values.migrations.mode "hook") (not $root.Values.secrets.existingSecret) -}}
        {{ include "syncroot.fullname" $root }}-migrate
        {{- else -}}
        {{ include "syncroot.secretName" $root }}
        {{- end }}
      key: {{ $secretKey }}
      {{- if not $required }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Every role's pods must stop within their grace period: (dict "root" $ "values" $roleValues). */}}
{{- define "syncroot.terminationGrace" -}}
{{- $drain := add (int64 (.root.Values.config.shutdown_grace_secs | default 30)) (int64 (.values.preStopSleepSeconds | default 0)) -}}
{{- $set := int64 (.root.Values.roleDefaults.terminationGracePeriodSeconds | default 0) -}}
{{- if eq $set 0 -}}
{{- add $drain 15 -}}
{{- else if le $set $drain -}}
{{- fail (printf "roleDefaults.terminationGracePeriodSeconds (%d) must exceed config.shutdown_grace_secs plus preStopSleepSeconds (%d), or in-flight work is killed" $set $drain) -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations that roll the pods when their configuration changes. */}}
{{- define "syncroot.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}

{{/*
Values the schema cannot judge alone. Included by the ConfigMap, which every install renders.
*/}}
{{- define "syncroot.validate" -}}
{{- $v := .Values -}}
{{- if not $v.secrets.existingSecret -}}
{{- range $key := list "databaseUrl" "amqpUrl" "apiKeys" -}}
{{- if not (get $v.secrets.fromValues $key) -}}
{{- fail (printf "secrets.fromValues.%s is required unless secrets.existingSecret names a Secret you manage" $key) -}}
{{- end -}}
{{- end -}}
{{- if and (include "syncroot.crmEnabled" (dict "root" . "crm" "hubspot")) (not $v.secrets.fromValues.hubspotToken) -}}
{{- fail "config.crms names hubspot: set secrets.fromValues.hubspotToken (or use secrets.existingSecret)" -}}
{{- end -}}
{{- if and (include "syncroot.crmEnabled" (dict "root" . "crm" "salesforce")) (not $v.secrets.fromValues.salesforceClientSecret) -}}
{{- fail "config.crms names salesforce: set secrets.fromValues.salesforceClientSecret (or use secrets.existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- if include "syncroot.crmEnabled" (dict "root" . "crm" "salesforce") -}}
{{- if not $v.config.salesforce_login_url -}}
{{- fail "config.crms names salesforce: set config.salesforce_login_url to your My Domain URL (https://yourorg.my.salesforce.com)" -}}
{{- end -}}
{{- if not $v.config.salesforce_client_id -}}
{{- fail "config.crms names salesforce: set config.salesforce_client_id (the connected app's consumer key)" -}}
{{- end -}}
{{- end -}}
{{- range $key, $cmd := include "syncroot.roles" . | fromYaml -}}
{{- $r := get $v.roles $key -}}
{{- if and $r.enabled $r.autoscaling.enabled -}}
{{- if lt (int64 $r.autoscaling.maxReplicas) (int64 $r.autoscaling.minReplicas) -}}
{{- fail (printf "roles.%s.autoscaling.maxReplicas must be at least minReplicas" $key) -}}
{{- end -}}
{{- if not (dig "requests" "cpu" "" $r.resources) -}}
{{- fail (printf "roles.%s.autoscaling needs roles.%s.resources.requests.cpu (the HPA aims at a share of it)" $key $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled (the ServiceMonitor scrapes the metrics Services)" -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.roles.api.enabled) -}}
{{- fail "ingress.enabled needs roles.api.enabled (the Ingress routes to the API Service)" -}}
{{- end -}}
{{- if eq $v.ports.api $v.ports.probe -}}
{{- fail "ports.api and ports.probe must differ" -}}
{{- end -}}
{{- end -}}
