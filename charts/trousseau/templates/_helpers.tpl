{{/* Chart name, truncated for label values. */}}
{{- define "trousseau.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name when it already names the chart. */}}
{{- define "trousseau.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trousseau.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trousseau.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trousseau.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "trousseau.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: kms-plugin
app.kubernetes.io/part-of: trousseau
{{- /* The kubelet, not Helm, runs a static pod: claiming managed-by Helm would mislead. */}}
{{- if ne .Values.deployment.mode "staticPod" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- end -}}

{{- define "trousseau.serviceAccountName" -}}
{{- default (include "trousseau.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "trousseau.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The ops address: ops.address, or the mode's default. A static pod shares the
host network, so it binds loopback unless told otherwise; a DaemonSet pod has
its own network namespace, where 0.0.0.0 is only the pod IP.
*/}}
{{- define "trousseau.opsAddress" -}}
{{- if .Values.ops.address -}}
{{- .Values.ops.address -}}
{{- else if eq .Values.deployment.mode "staticPod" -}}
127.0.0.1:8787
{{- else -}}
0.0.0.0:8787
{{- end -}}
{{- end -}}

{{/* The ops port, the part after the last colon of the ops address. */}}
{{- define "trousseau.opsPort" -}}
{{- last (splitList ":" (include "trousseau.opsAddress" .)) -}}
{{- end -}}

{{/* The ops host without IPv6 brackets; empty, 0.0.0.0 or :: mean every address. */}}
{{- define "trousseau.opsHost" -}}
{{- $a := include "trousseau.opsAddress" . -}}
{{- trimAll "[]" (trimSuffix (printf ":%s" (include "trousseau.opsPort" .)) $a) -}}
{{- end -}}

{{/* Where the static pod's probes (and an operator on the host) reach the ops server. */}}
{{- define "trousseau.opsProbeHost" -}}
{{- $h := include "trousseau.opsHost" . -}}
{{- if has $h (list "" "0.0.0.0" "::") -}}127.0.0.1{{- else -}}{{- $h -}}{{- end -}}
{{- end -}}

{{/* Where the projected ServiceAccount token is mounted (kubernetes auth). */}}
{{- define "trousseau.saTokenDir" -}}/var/run/secrets/trousseau{{- end -}}

{{/* Where the DaemonSet mounts the ConfigMap; static pods use staticPod.configDir. */}}
{{- define "trousseau.configDir" -}}
{{- if eq .Values.deployment.mode "staticPod" -}}
{{- .Values.staticPod.configDir -}}
{{- else -}}
/etc/trousseau/config
{{- end -}}
{{- end -}}

{{/*
Cross-field checks the JSON schema cannot express. Each message names the fix.
*/}}
{{- define "trousseau.validate" -}}
{{- $v := .Values -}}
{{- $_ := required "vault.address is required: set it to your Vault's URL, e.g. --set vault.address=https://vault.example.com:8200 (there is no default, so that no cluster silently talks to a dev Vault)." $v.vault.address -}}
{{- if and (eq $v.deployment.mode "staticPod") (eq $v.auth.method "kubernetes") -}}
{{- fail "auth.method=kubernetes cannot be used with deployment.mode=staticPod: static pods cannot mount ServiceAccount tokens. Use auth.method=approle, token or cert (credentials in host files), or deployment.mode=daemonSet." -}}
{{- end -}}
{{- if and (eq $v.auth.method "cert") (or (not $v.vault.tls.certFile) (not $v.vault.tls.keyFile)) -}}
{{- fail "auth.method=cert needs vault.tls.certFile and vault.tls.keyFile (host paths of the client certificate and key)." -}}
{{- end -}}
{{- if and (eq $v.auth.method "cert") (not (hasPrefix "https://" $v.vault.address)) -}}
{{- fail (printf "auth.method=cert needs an https:// vault.address (got %q): the client certificate is presented during TLS." $v.vault.address) -}}
{{- end -}}
{{- if ne (empty $v.vault.tls.certFile) (empty $v.vault.tls.keyFile) -}}
{{- fail "vault.tls.certFile and vault.tls.keyFile go together: set both or neither." -}}
{{- end -}}
{{- if not (isAbs $v.socket.path) -}}
{{- fail (printf "socket.path %q must be an absolute path: it is shared with the kube-apiserver through a hostPath." $v.socket.path) -}}
{{- end -}}
{{- range $f := fromJsonArray (include "trousseau.credentialFiles" $) -}}
{{- if not (isAbs $f) -}}
{{- fail (printf "credential file %q must be an absolute host path: it is mounted read-only at the same path." $f) -}}
{{- end -}}
{{- if eq (dir $f) (include "trousseau.configDir" $) -}}
{{- fail (printf "credential file %q must not live in the config directory %s: move it to another directory." $f (include "trousseau.configDir" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Host files the plugin config names (JSON list): credentials and TLS material. */}}
{{- define "trousseau.credentialFiles" -}}
{{- $v := .Values -}}
{{- $files := list -}}
{{- if eq $v.auth.method "approle" -}}
{{- $files = append $files $v.auth.approle.roleIDFile -}}
{{- $files = append $files $v.auth.approle.secretIDFile -}}
{{- else if eq $v.auth.method "token" -}}
{{- $files = append $files $v.auth.token.tokenFile -}}
{{- end -}}
{{- range $f := list $v.vault.tls.caFile $v.vault.tls.certFile $v.vault.tls.keyFile -}}
{{- if $f -}}{{- $files = append $files $f -}}{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/*
Host directories the plugin mounts (JSON list of {name, path, readOnly, type}):
the socket directory read-write, the static pod's config directory and every
credential directory read-only. Mounting directories rather than files means a
rotated credential file is seen without a restart.
*/}}
{{- define "trousseau.hostDirs" -}}
{{- $dirs := list (dict "name" "socket-dir" "path" (dir .Values.socket.path) "readOnly" false "type" "DirectoryOrCreate") -}}
{{- $seen := list (dir .Values.socket.path) -}}
{{- if eq .Values.deployment.mode "staticPod" -}}
{{- $seen = append $seen .Values.staticPod.configDir -}}
{{- $dirs = append $dirs (dict "name" "config" "path" .Values.staticPod.configDir "readOnly" true "type" "Directory") -}}
{{- end -}}
{{- range $f := fromJsonArray (include "trousseau.credentialFiles" .) -}}
{{- $d := dir $f -}}
{{- if not (has $d $seen) -}}
{{- $seen = append $seen $d -}}
{{- $dirs = append $dirs (dict "name" (printf "host-%s" (sha256sum $d | trunc 10)) "path" $d "readOnly" true "type" "Directory") -}}
{{- end -}}
{{- end -}}
{{- toJson $dirs -}}
{{- end -}}

{{/* The plugin configuration file (plugin/config types, camelCase keys). */}}
{{- define "trousseau.config" -}}
{{- $v := .Values -}}
{{- $auth := dict "method" $v.auth.method -}}
{{- if eq $v.auth.method "kubernetes" -}}
{{- $_ := set $auth "kubernetes" (dict "mount" $v.auth.kubernetes.mount "role" $v.auth.kubernetes.role "tokenFile" (printf "%s/token" (include "trousseau.saTokenDir" .))) -}}
{{- else if eq $v.auth.method "approle" -}}
{{- $_ := set $auth "approle" (dict "mount" $v.auth.approle.mount "roleIDFile" $v.auth.approle.roleIDFile "secretIDFile" $v.auth.approle.secretIDFile) -}}
{{- else if eq $v.auth.method "token" -}}
{{- $_ := set $auth "token" (dict "tokenFile" $v.auth.token.tokenFile) -}}
{{- else if eq $v.auth.method "cert" -}}
{{- $cert := dict "mount" $v.auth.cert.mount -}}
{{- if $v.auth.cert.name -}}{{- $_ := set $cert "name" $v.auth.cert.name -}}{{- end -}}
{{- $_ := set $auth "cert" $cert -}}
{{- end -}}
{{- $tls := dict -}}
{{- range $k := list "caFile" "certFile" "keyFile" "serverName" -}}
{{- if index $v.vault.tls $k -}}{{- $_ := set $tls $k (index $v.vault.tls $k) -}}{{- end -}}
{{- end -}}
{{- if $v.vault.tls.insecureSkipVerify -}}{{- $_ := set $tls "insecureSkipVerify" true -}}{{- end -}}
{{- $vault := dict "address" $v.vault.address "transitMount" $v.vault.transitMount "keyName" $v.vault.keyName "requestTimeout" $v.vault.requestTimeout "tls" $tls "auth" $auth -}}
{{- if $v.vault.namespace -}}{{- $_ := set $vault "namespace" $v.vault.namespace -}}{{- end -}}
{{- $cfg := dict
  "socket" (dict "path" $v.socket.path "mode" $v.socket.mode "shutdownGrace" $v.socket.shutdownGrace)
  "ops" (dict "address" (include "trousseau.opsAddress" .))
  "log" (dict "format" $v.log.format "level" $v.log.level)
  "status" (dict "refreshInterval" $v.status.refreshInterval)
  "provider" (dict "vault" $vault) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
The plugin pod spec, shared by the DaemonSet and the static pod. Static pods
get the host network (they run before any CNI) and the host's resolver (they
run before CoreDNS, so cluster DNS would make Vault unresolvable on a cold
start), no ServiceAccount and no ConfigMap; the DaemonSet gets the projected
token for kubernetes auth.
*/}}
{{- define "trousseau.podSpec" -}}
{{- $static := eq .Values.deployment.mode "staticPod" -}}
{{- $hostDirs := fromJsonArray (include "trousseau.hostDirs" .) -}}
{{- if $static }}
hostNetwork: true
dnsPolicy: Default
{{- else }}
serviceAccountName: {{ include "trousseau.serviceAccountName" . }}
{{- with .Values.deployment.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.deployment.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
priorityClassName: {{ .Values.deployment.priorityClassName }}
terminationGracePeriodSeconds: {{ .Values.deployment.terminationGracePeriodSeconds }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: trousseau
    image: {{ include "trousseau.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      - serve
      - --config
      - {{ include "trousseau.configDir" . }}/trousseau.yaml
    ports:
      - name: ops
        containerPort: {{ include "trousseau.opsPort" . }}
        protocol: TCP
    livenessProbe:
      httpGet:
        {{- if $static }}
        # hostNetwork: the kubelet probes this host address.
        host: {{ include "trousseau.opsProbeHost" . }}
        {{- end }}
        path: /livez
        port: ops
      periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
      timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
      failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
    readinessProbe:
      httpGet:
        {{- if $static }}
        # hostNetwork: the kubelet probes this host address.
        host: {{ include "trousseau.opsProbeHost" . }}
        {{- end }}
        path: /readyz
        port: ops
      periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
      timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
      failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- range $hostDirs }}
      - name: {{ .name }}
        mountPath: {{ .path }}
        readOnly: {{ .readOnly }}
      {{- end }}
      {{- if not $static }}
      - name: config
        mountPath: {{ include "trousseau.configDir" . }}
        readOnly: true
      {{- if eq .Values.auth.method "kubernetes" }}
      - name: vault-token
        mountPath: {{ include "trousseau.saTokenDir" . }}
        readOnly: true
      {{- end }}
      {{- end }}
volumes:
  {{- range $hostDirs }}
  - name: {{ .name }}
    hostPath:
      path: {{ .path }}
      type: {{ .type }}
  {{- end }}
  {{- if not $static }}
  - name: config
    configMap:
      name: {{ include "trousseau.fullname" . }}
  {{- if eq .Values.auth.method "kubernetes" }}
  - name: vault-token
    projected:
      sources:
        - serviceAccountToken:
            path: token
            audience: {{ .Values.auth.kubernetes.audience }}
            expirationSeconds: {{ .Values.auth.kubernetes.tokenExpirationSeconds }}
  {{- end }}
  {{- end }}
{{- end -}}
