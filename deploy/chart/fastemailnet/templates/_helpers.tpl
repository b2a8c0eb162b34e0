{{/*
Names, labels and the pieces every node's pod shares.
*/}}

{{- define "fen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fen.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fen.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fastemailnet
{{- end -}}

{{/* Selector labels of one role: (dict "ctx" $ "role" "gateway") */}}
{{- define "fen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fen.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "fen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fen.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fen.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fen.natsCredentialsSecret" -}}
{{- default (printf "%s-nats-credentials" (include "fen.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "fen.ledgerKeysSecret" -}}
{{- default (printf "%s-ledger-keys" (include "fen.fullname" .)) .Values.ledger.keysSecret.name -}}
{{- end -}}

{{/* The NATS user of a role; the same names as nodes/local/permissions.ts userOf(). */}}
{{- define "fen.natsUser" -}}
{{- printf "fen-%s" . -}}
{{- end -}}

{{/* Where the NATS CA is mounted in the nodes. */}}
{{- define "fen.natsCaDir" -}}/etc/fastemailnet/nats-ca{{- end -}}

{{/*
The ConfigMap data of a role: config.common, then config.<role>, then what
the chart itself sets (HTTP port and address, NATS user, CA path). Only
non-secret FEN_* keys of the role's table in nodes/config/schema.ts.
(dict "ctx" $ "role" "gateway")
*/}}
{{/* A value as an environment variable's text. YAML numbers reach templates as float64, which toString
     writes as 1.0000001e+07 from 10^7 up: whole numbers are written as integers. */}}
{{- define "fen.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}{{ int64 . }}{{- else -}}{{ toString . }}{{- end -}}
{{- end -}}

{{- define "fen.configData" -}}
{{- $v := .ctx.Values -}}
{{- $data := dict -}}
{{- range $k, $val := $v.config.common }}{{ $_ := set $data $k (include "fen.envValue" $val) }}{{ end -}}
{{- range $k, $val := (get $v.config .role) }}{{ $_ := set $data $k (include "fen.envValue" $val) }}{{ end -}}
{{- if ne .role "provision" -}}
{{- $_ := set $data "FEN_HTTP_HOST" "0.0.0.0" -}}
{{- $_ := set $data "FEN_HTTP_PORT" (toString $v.http.port) -}}
{{- end -}}
{{- if eq .role "processing" -}}
{{- /* mail.classify refuses what the gateway refuses: its size limit, unless set for the processing nodes. */ -}}
{{- if and (not (hasKey $data "FEN_MAX_MESSAGE_BYTES")) (hasKey ($v.config.gateway | default dict) "FEN_MAX_MESSAGE_BYTES") -}}
{{- $_ := set $data "FEN_MAX_MESSAGE_BYTES" (include "fen.envValue" $v.config.gateway.FEN_MAX_MESSAGE_BYTES) -}}
{{- end -}}
{{- /* The drain deadline must end before the kubelet kills the pod (Kubernetes' default grace is 30 s):
       unless set, grace - 20 s (half the grace below 40 s), leaving time to record the mails given up, and at
       most 3600000, the largest FEN_DRAIN_TIMEOUT_MS the node takes (ProcessingKeys; a chart test checks they
       agree): a longer grace only leaves more time after it. */ -}}
{{- $graceMs := mul (int64 ($v.processing.terminationGracePeriodSeconds | default 30)) 1000 -}}
{{- if hasKey $data "FEN_DRAIN_TIMEOUT_MS" -}}
{{- /* atoi reads decimal as the node does (int64 would read a leading 0 as octal; atoi reads what is not a number as 0,
       hence the pattern); 5 s are left to record the give-ups. */ -}}
{{- if not (regexMatch "^[0-9]{1,10}$" (get $data "FEN_DRAIN_TIMEOUT_MS")) -}}
{{- fail (printf "config.processing.FEN_DRAIN_TIMEOUT_MS (%s) must be a whole number of milliseconds" (get $data "FEN_DRAIN_TIMEOUT_MS")) -}}
{{- end -}}
{{- if gt (add (atoi (get $data "FEN_DRAIN_TIMEOUT_MS")) 5000) $graceMs -}}
{{- fail (printf "config.processing.FEN_DRAIN_TIMEOUT_MS (%s) must end at least 5 s before processing.terminationGracePeriodSeconds (%d ms): the pod would be killed before its drain gives up and records its mails" (get $data "FEN_DRAIN_TIMEOUT_MS") $graceMs) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $data "FEN_DRAIN_TIMEOUT_MS" (toString (ternary (min (sub $graceMs 20000) 3600000) (div $graceMs 2) (ge $graceMs 40000))) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .role "gateway") $v.nats.enabled -}}
{{- /* The gateway refuses to start when a request carrying a mail of FEN_MAX_MESSAGE_BYTES (x 1.45 + 64 KiB,
       maxRequestBytesFor) would not fit its NATS server's max_payload: with the bundled NATS that is known here,
       so it is refused at render instead of a crash loop (default max_payload 1 MiB, as nats-server's). */ -}}
{{- $maxBytes := atoi (get $data "FEN_MAX_MESSAGE_BYTES" | default "10485760") -}}
{{- $maxPayload := int64 (dig "config" "merge" "max_payload" 1048576 ($v.nats | merge dict)) -}}
{{- if gt (add (div (add (mul $maxBytes 145) 99) 100) 65536) $maxPayload -}}
{{- fail (printf "config.gateway.FEN_MAX_MESSAGE_BYTES (%d) needs requests of up to %d bytes, more than the bundled NATS's max_payload (%d, nats.config.merge.max_payload): lower it to at most %d or raise max_payload; the gateway refuses this configuration at start" $maxBytes (add (div (add (mul $maxBytes 145) 99) 100) 65536) $maxPayload (div (mul (sub $maxPayload 65536) 100) 145)) -}}
{{- end -}}
{{- end -}}
{{- /* The rules between keys the node checks at start (files/config-rules.json, generated from CrossKeyRules):
       refused here, or every pod of the role would crash-loop with CONFIG_INVALID. */ -}}
{{- $role := .role -}}
{{- range $rule := (.ctx.Files.Get "files/config-rules.json" | fromJson).rules -}}
{{- if has $role $rule.roles -}}
{{- $high := ternary (int64 (atoi (get $data $rule.high))) (int64 (index $rule.defaults $rule.high)) (hasKey $data $rule.high) -}}
{{- $low := ternary (int64 (atoi (get $data $rule.low))) (int64 (index $rule.defaults $rule.low)) (hasKey $data $rule.low) -}}
{{- if lt $high $low -}}
{{- fail (printf "config.%s.%s (%d%s) must be at least %s (%d%s): the nodes refuse this configuration at start (nodes/config/CONFIG.md)" $role $rule.high $high (ternary "" ", the default" (hasKey $data $rule.high)) $rule.low $low (ternary "" ", the default" (hasKey $data $rule.low))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Keys set together or not at all: a key is set when the ConfigMap has it (not empty, as the node reads it)
       or the pod gets it from a Secret (fen.env; e.g. FEN_SMTP_PASSWORD from processing.smtpPasswordSecret). */ -}}
{{- $fromSecrets := list -}}
{{- range $e := (include "fen.env" (dict "ctx" .ctx "role" .role) | fromYamlArray) -}}
{{- $fromSecrets = append $fromSecrets $e.name -}}
{{- end -}}
{{- range $rule := (.ctx.Files.Get "files/config-rules.json" | fromJson).together -}}
{{- if has $role $rule.roles -}}
{{- $set := list -}}
{{- $unset := list -}}
{{- range $k := $rule.keys -}}
{{- $where := printf "%s (%s)" $k (ternary (index $rule.secretFrom $k | toString) (printf "config.%s.%s" $role $k) (hasKey $rule.secretFrom $k)) -}}
{{- if or (ne (get $data $k) "") (has $k $fromSecrets) -}}
{{- $set = append $set $where -}}
{{- else -}}
{{- $unset = append $unset $where -}}
{{- end -}}
{{- end -}}
{{- if and $set $unset -}}
{{- fail (printf "config.%s.%s: %s is set but %s is not; set both or neither: the nodes refuse this configuration at start (nodes/config/CONFIG.md)" $role $rule.field (join ", " $set) (join ", " $unset)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $v.auth.enabled -}}
{{- $_ := set $data "FEN_NATS_USER" (include "fen.natsUser" .role) -}}
{{- end -}}
{{- if $v.tls.enabled -}}
{{- $_ := set $data "FEN_NATS_TLS_CA" (printf "%s/%s" (include "fen.natsCaDir" .ctx) $v.tls.caKey) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* Environment that is not in the ConfigMap: the pod's name and the secrets. (dict "ctx" $ "role" "gateway") */}}
{{- define "fen.env" -}}
{{- $v := .ctx.Values -}}
{{- if ne .role "provision" }}
- name: FEN_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- if $v.auth.enabled }}
- name: FEN_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fen.natsCredentialsSecret" .ctx }}
      key: {{ .role }}
{{- end }}
{{- if eq .role "ledger" }}
- name: FEN_LEDGER_SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "fen.ledgerKeysSecret" .ctx }}
      key: {{ $v.ledger.keysSecret.signingKeyKey }}
- name: FEN_LEDGER_COMMITMENT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "fen.ledgerKeysSecret" .ctx }}
      key: {{ $v.ledger.keysSecret.commitmentKeyKey }}
{{- end }}
{{- if eq .role "processing" }}
{{- with $v.processing.smtpPasswordSecret }}
- name: FEN_SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts every node container has: a writable /tmp and the NATS CA. */}}
{{- define "fen.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if .Values.tls.enabled }}
- name: nats-ca
  secret:
    secretName: {{ required "tls.caSecret is required when tls.enabled" .Values.tls.caSecret }}
    items:
      - key: {{ .Values.tls.caKey }}
        path: {{ .Values.tls.caKey }}
{{- end }}
{{- end -}}

{{- define "fen.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: nats-ca
  mountPath: {{ include "fen.natsCaDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
A node container. (dict "ctx" $ "role" "gateway" "resources" {...})
The command is the one test/deploy/chart-smoke.test.ts runs locally.
*/}}
{{- define "fen.container" -}}
- name: {{ .role }}
  image: {{ include "fen.image" .ctx }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  command: ["node", "--import", "tsx", {{ printf "nodes/%s/main.ts" .role | quote }}{{ if and (eq .role "provision") .ctx.Values.provision.updateSpecs }}, "--update"{{ end }}]
  envFrom:
    - configMapRef:
        name: {{ include "fen.fullname" .ctx }}-{{ .role }}
  {{- with include "fen.env" (dict "ctx" .ctx "role" .role) | trim }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  {{- if ne .role "provision" }}
  ports:
    - name: http
      containerPort: {{ .ctx.Values.http.port }}
      protocol: TCP
  startupProbe:
    httpGet: { path: /healthz, port: http }
    periodSeconds: 2
    failureThreshold: 60
  livenessProbe:
    httpGet: { path: /healthz, port: http }
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    httpGet: { path: /readyz, port: http }
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 2
  {{- end }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml .ctx.Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- include "fen.volumeMounts" .ctx | nindent 4 }}
{{- end -}}

{{/* Pod-level settings every node shares. (dict "ctx" $ "role" "gateway" "values" .Values.gateway) */}}
{{- define "fen.podSpec" -}}
serviceAccountName: {{ include "fen.serviceAccountName" .ctx }}
automountServiceAccountToken: false
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .values.terminationGracePeriodSeconds }}
terminationGracePeriodSeconds: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  {{- include "fen.container" (dict "ctx" .ctx "role" .role "resources" .values.resources) | nindent 2 }}
volumes:
  {{- include "fen.volumes" .ctx | nindent 2 }}
{{- end -}}

{{- define "fen.podAnnotations" -}}
checksum/config: {{ include "fen.configData" (dict "ctx" .ctx "role" .role) | sha256sum }}
{{- if .ctx.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .ctx.Values.http.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The work stream and consumer, as protocol/specs.ts Names spells them (a chart test checks they agree). */}}
{{- define "fen.workStream" -}}MAIL_WORK{{- end -}}
{{- define "fen.workConsumer" -}}processing{{- end -}}
