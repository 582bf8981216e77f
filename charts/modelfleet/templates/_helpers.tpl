{{/* Chart name, truncated to a label value's 63 characters. */}}
{{- define "modelfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "modelfleet.fullname" -}}
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

{{- define "modelfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelfleet
{{- end }}

{{- define "modelfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "modelfleet.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{/* Peering is on for several replicas, or when asked for. */}}
{{- define "modelfleet.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
The namespaced permissions of the operator: exactly the verbs it uses (handlers/kube.py and
kopf), no wildcards. The same list goes into the ClusterRole (cluster-wide mode) or into a Role
in each watched namespace. Server-side apply creates an object when it is missing, and the API
server then also authorizes `create`: every kind the operator applies carries create and patch.
The Job identity it creates in each namespace (ServiceAccount, Role, RoleBinding) may be read and
patched only under its own name (`resourceNames`); `create` cannot be limited by name. `get`
on Deployments, Services and PodDisruptionBudgets reads an unlabelled object of a child's name
(which the watch, filtered to modelfleet's labels, never shows) before anything is written:
ChildConflict. `delete` on PodDisruptionBudgets removes a serving budget below 2 replicas. `list`
on core Events reads, for a pod held in ContainerCreating, the kubelet's FailedMount and the
attach controller's FailedAttachVolume: VolumeMountFailed.
*/}}
{{- define "modelfleet.namespacedRules" -}}
- apiGroups: [modelfleet.io]
  resources: [models]
  verbs: [get, list, watch, create, patch]
- apiGroups: [modelfleet.io]
  resources: [models/status]
  verbs: [get, patch]
- apiGroups: [modelfleet.io]
  resources: [finetunejobs]
  verbs: [get, list, watch, patch]
- apiGroups: [modelfleet.io]
  resources: [finetunejobs/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create]
- apiGroups: [""]
  resources: [serviceaccounts]
  resourceNames: [{{ .Values.jobServiceAccount | quote }}]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  resourceNames: [{{ .Values.jobServiceAccount | quote }}]
  verbs: [get, patch]
{{- end }}

{{/* Cluster-scoped reads: StorageClasses a Model names, and what kopf scans. */}}
{{- define "modelfleet.clusterScopedRules" -}}
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
The defaults of the pods the operator creates (values: defaults), as the JSON the operator reads
from MODELFLEET_DEFAULTS (operator/modelfleet/settings.py ChildDefaults); an empty mirror is
left out.
*/}}
{{- define "modelfleet.childDefaults" -}}
{{- $defaults := deepCopy .Values.defaults -}}
{{- if not $defaults.huggingfaceEndpoint -}}
{{- $_ := unset $defaults "huggingfaceEndpoint" -}}
{{- end -}}
{{- toJson $defaults -}}
{{- end }}
