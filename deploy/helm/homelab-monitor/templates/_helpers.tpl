{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "homelab-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "homelab-monitor.fullname" -}}
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

{{- define "homelab-monitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels. `app: homelab-monitor` is the label the seed's ServiceMonitor
selects on; the instance label keeps two releases apart.
*/}}
{{- define "homelab-monitor.selectorLabels" -}}
app: homelab-monitor
app.kubernetes.io/name: {{ include "homelab-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "homelab-monitor.labels" -}}
helm.sh/chart: {{ include "homelab-monitor.chart" . }}
{{ include "homelab-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: homelab-monitor
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "homelab-monitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "homelab-monitor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "homelab-monitor.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding monitoring-config.yaml, empty when there is none. */}}
{{- define "homelab-monitor.configMapName" -}}
{{- if .Values.config.existingConfigMap }}
{{- .Values.config.existingConfigMap }}
{{- else if .Values.config.create }}
{{- printf "%s-config" (include "homelab-monitor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Volume source of one entry of .Values.sources; fails unless exactly one kind is set. */}}
{{- define "homelab-monitor.sourceVolume" -}}
{{- $name := index . 0 }}
{{- $src := index . 1 }}
{{- $kinds := 0 }}
{{- if $src.existingClaim }}{{ $kinds = add1 $kinds }}{{ end }}
{{- if $src.hostPath }}{{ $kinds = add1 $kinds }}{{ end }}
{{- if $src.secretName }}{{ $kinds = add1 $kinds }}{{ end }}
{{- if ne (int $kinds) 1 }}
{{- fail (printf "sources.%s: set exactly one of existingClaim, hostPath or secretName" $name) }}
{{- end }}
- name: source-{{ $name }}
{{- if $src.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $src.existingClaim }}
    readOnly: true
{{- else if $src.hostPath }}
  hostPath:
    path: {{ $src.hostPath }}
    type: Directory
{{- else }}
  secret:
    secretName: {{ $src.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/*
The exporter container. Reusable: a chart that embeds this one as a
dependency can `include "homelab-monitor.container"` in its own pod spec to
run the exporter as a sidecar (add the volumes from "homelab-monitor.volumes").
*/}}
{{- define "homelab-monitor.container" -}}
- name: homelab-monitor
  image: {{ include "homelab-monitor.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - --web.listen-address=:{{ .Values.exporter.port }}
    - --web.telemetry-path={{ .Values.exporter.telemetryPath }}
    - --log.level={{ .Values.exporter.logLevel }}
    - --log.format={{ .Values.exporter.logFormat }}
    {{- if include "homelab-monitor.configMapName" . }}
    - --config=/etc/homelab-monitor/monitoring-config.yaml
    {{- end }}
    {{- if .Values.exporter.watch }}
    - --watch
    {{- end }}
    {{- with .Values.exporter.interval }}
    - --interval={{ . }}
    {{- end }}
    {{- if and .Values.sharding.enabled (not .Values.sharding.totalFromStatefulSet) }}
    - --total-shards={{ .Values.sharding.replicas }}
    {{- end }}
    {{- range .Values.exporter.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  {{- if or .Values.sharding.enabled .Values.exporter.extraEnv }}
  env:
    {{- if .Values.sharding.enabled }}
    # StatefulSet auto-sharding: the shard is this pod's ordinal (--pod); the
    # total is the StatefulSet's replicas, watched (sharding.totalFromStatefulSet).
    - name: HOMELAB_MONITOR_POD
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: HOMELAB_MONITOR_POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- end }}
    {{- with .Values.exporter.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.exporter.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ .Values.exporter.port }}
      protocol: TCP
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "homelab-monitor.volumeMounts" . }}
  volumeMounts:
    {{- . | trim | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The exporter's volume mounts (all read-only). */}}
{{- define "homelab-monitor.volumeMounts" -}}
{{- if include "homelab-monitor.configMapName" . }}
- name: config
  mountPath: /etc/homelab-monitor
  readOnly: true
{{- end }}
{{- range $name, $src := .Values.sources }}
{{- if $src.enabled }}
- name: source-{{ $name }}
  mountPath: {{ $src.mountPath }}
  readOnly: true
  {{- with $src.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- end }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The volumes the exporter container mounts. */}}
{{- define "homelab-monitor.volumes" -}}
{{- with include "homelab-monitor.configMapName" . }}
- name: config
  configMap:
    name: {{ . }}
{{- end }}
{{- range $name, $src := .Values.sources }}
{{- if $src.enabled }}
{{ include "homelab-monitor.sourceVolume" (list $name $src) | trim }}
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
monitoring-config.yaml: config.content, plus a monitor for each enabled source
it does not configure, reading that source's mount. Nothing that is not mounted
is watched by default (an unmounted path would only ever report an error).
*/}}
{{- define "homelab-monitor.configContent" -}}
{{- $content := deepCopy (default (dict) .Values.config.content) }}
{{- $monitors := deepCopy (default (dict) (get $content "custom_monitors")) }}
{{- $src := .Values.sources }}
{{- if and $src.terraform.enabled (not (hasKey $monitors "terraform_state")) }}
{{- $_ := set $monitors "terraform_state" (dict "enabled" true "check_interval" "5m" "state_dirs" (list $src.terraform.mountPath)) }}
{{- end }}
{{- if and $src.certificates.enabled (not (hasKey $monitors "certificate_expiry")) }}
{{- $_ := set $monitors "certificate_expiry" (dict "enabled" true "check_interval" "1h" "warning_days" 30 "critical_days" 7 "paths" (list $src.certificates.mountPath)) }}
{{- end }}
{{- if .Values.kubernetes.enabled }}
{{- $ce := deepCopy (default (dict "enabled" true) (get $monitors "certificate_expiry")) }}
{{- if not (hasKey $ce "kubernetes") }}
{{- $srcs := list }}
{{- range .Values.kubernetes.sources }}
{{- $s := deepCopy . }}
{{- /* With per-namespace Roles, a namespaced source reads those namespaces only. */}}
{{- if and $.Values.kubernetes.rbacNamespaces (has .kind (list "tls_secrets" "secrets" "configmaps")) (not (hasKey $s "namespaces")) }}
{{- $_ := set $s "namespaces" $.Values.kubernetes.rbacNamespaces }}
{{- end }}
{{- $srcs = append $srcs $s }}
{{- end }}
{{- $_ := set $ce "kubernetes" (dict "sources" $srcs) }}
{{- end }}
{{- $_ := set $monitors "certificate_expiry" $ce }}
{{- end }}
{{- $_ := set $content "custom_monitors" $monitors }}
{{- toYaml $content }}
{{- end }}


{{/* The exporter's pod template (indented for a workload's spec), shared by
the Deployment and the sharded StatefulSet. */}}
{{- define "homelab-monitor.podTemplate" }}
  template:
    metadata:
      annotations:
        {{- if and .Values.config.create (not .Values.config.existingConfigMap) }}
        checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
        {{- end }}
        {{- if .Values.kubernetes.enabled }}
        homelab-monitor/kubernetes-api: list-watch
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "homelab-monitor.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "homelab-monitor.serviceAccountName" . }}
      automountServiceAccountToken: {{ or .Values.automountServiceAccountToken .Values.kubernetes.enabled (and .Values.sharding.enabled .Values.sharding.totalFromStatefulSet) }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- with .Values.podSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        {{- include "homelab-monitor.container" . | nindent 8 }}
        {{- with .Values.extraContainers }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "homelab-monitor.volumes" . }}
      volumes:
        {{- . | trim | nindent 8 }}
      {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* "true" (non-empty) when a prometheus-operator/Grafana object is on: its
`enabled` value is true, or "auto" and the cluster serves monitoring.coreos.com/v1
(`helm template` without --api-versions: off). Call with (list VALUE $). */}}
{{- define "homelab-monitor.operatorOn" -}}
{{- $v := index . 0 }}
{{- $ctx := index . 1 }}
{{- if kindIs "bool" $v }}
{{- if $v }}true{{ end }}
{{- else if eq (toString $v) "auto" }}
{{- if $ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}
{{- end }}

{{/* RBAC resources for the configured Kubernetes sources: a list of
"group|resource|namespaced" strings, unique. */}}
{{- define "homelab-monitor.kubeResources" -}}
{{- $out := list }}
{{- range .Values.kubernetes.sources }}
{{- $k := .kind }}
{{- if or (eq $k "tls_secrets") (eq $k "secrets") }}{{ $out = append $out "|secrets|true" }}
{{- else if eq $k "configmaps" }}{{ $out = append $out "|configmaps|true" }}
{{- else if eq $k "validating_webhooks" }}{{ $out = append $out "admissionregistration.k8s.io|validatingwebhookconfigurations|false" }}
{{- else if eq $k "mutating_webhooks" }}{{ $out = append $out "admissionregistration.k8s.io|mutatingwebhookconfigurations|false" }}
{{- else if eq $k "api_services" }}{{ $out = append $out "apiregistration.k8s.io|apiservices|false" }}
{{- else if eq $k "crd_conversions" }}{{ $out = append $out "apiextensions.k8s.io|customresourcedefinitions|false" }}
{{- else }}{{ fail (printf "kubernetes.sources: unknown kind %q" $k) }}
{{- end }}
{{- end }}
{{- toJson (uniq $out) }}
{{- end }}
