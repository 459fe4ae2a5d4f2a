{{/* Names and labels shared by every object of the release. */}}

{{- define "tfops.name" -}}
{{- .Chart.Name -}}
{{- end -}}

{{- define "tfops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tfops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tfops.labels" -}}
{{ include "tfops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tfops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tfops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tfops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The rules the operator needs in every namespace it watches: exactly the verbs
tfops uses (operator/tfops/clients/kube.py, kopf's watches and status writes).
*/}}
{{- define "tfops.watchRules" -}}
- apiGroups: ["serving.tfops.dev"]
  resources: ["modelservers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["serving.tfops.dev"]
  resources: ["modelservers/status"]
  verbs: ["get", "patch"]
# Owned objects: watched, and written by server-side apply (create or patch).
{{ include "tfops.ownedRules" . }}
# Serving pods: watched; a leaking one is evicted (the PodDisruptionBudget holds).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Each serving pod's readiness gate (serving.tfops.dev/models-ready).
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
# The memory guard's samples.
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
