{{- define "vault-dev.fullname" -}}
{{- if contains "vault" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vault" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vault-dev.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vault-dev.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vault-dev.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: vault
app.kubernetes.io/part-of: trousseau
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Vault pod spec; dev and persistent modes differ only in command and storage. */}}
{{- define "vault-dev.podSpec" -}}
{{- if .Values.kubernetesAuth.enabled }}
serviceAccountName: {{ include "vault-dev.fullname" . }}
# Vault's Kubernetes auth reviews tokens with this pod's own token and CA.
automountServiceAccountToken: true
{{- else }}
automountServiceAccountToken: false
{{- end }}
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  # uid/gid of the vault user in the official image.
  runAsUser: 100
  runAsGroup: 1000
  fsGroup: 1000
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: vault
    image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    # The image's entrypoint would chown and setcap as root; call vault directly.
    command: ["vault"]
    {{- if eq .Values.mode "dev" }}
    args: ["server", "-dev", "-dev-listen-address=0.0.0.0:8200", "-dev-no-store-token"]
    {{- else }}
    args: ["server", "-config=/vault/config/vault.hcl"]
    {{- end }}
    env:
      - name: HOME
        value: /tmp
      - name: VAULT_ADDR
        value: http://127.0.0.1:8200
      {{- if eq .Values.mode "dev" }}
      - name: VAULT_DEV_ROOT_TOKEN_ID
        valueFrom:
          secretKeyRef:
            name: {{ .Values.dev.rootTokenSecret }}
            key: token
      {{- end }}
    ports:
      - name: http
        containerPort: 8200
        protocol: TCP
    readinessProbe:
      httpGet:
        # Ready once the process serves; a sealed or uninitialised persistent
        # Vault is reported by the appliance, which unseals it.
        path: /v1/sys/health?standbyok=true&sealedcode=204&uninitcode=204
        port: http
      periodSeconds: 5
    {{- if eq .Values.mode "persistent" }}
    livenessProbe:
      httpGet:
        path: /v1/sys/health?standbyok=true&sealedcode=204&uninitcode=204
        port: http
      periodSeconds: 10
      failureThreshold: 6
    {{- end }}
    {{- /* No liveness probe in dev mode: a restart loses every key, which is
    worse than a hung process (the appliance pauses Vault with SIGSTOP to
    simulate an outage). */}}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if eq .Values.mode "persistent" }}
      - name: config
        mountPath: /vault/config
        readOnly: true
      - name: data
        mountPath: /vault/data
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if eq .Values.mode "persistent" }}
  - name: config
    configMap:
      name: {{ include "vault-dev.fullname" . }}-config
  {{- end }}
{{- end -}}
