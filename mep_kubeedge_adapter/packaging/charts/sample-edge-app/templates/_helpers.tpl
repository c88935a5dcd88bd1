{{/*
Names: the release name when it already contains the chart name, else
<release>-sample-edge-app; the selector derives from it, so two releases never share pods.
*/}}
{{- define "sample.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sample.namespace" -}}
{{- .Values.appconfig.appnamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "sample.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sample.fullname" . }}
app.kubernetes.io/component: edge-app
{{- end -}}

{{- define "sample.labels" -}}
app.kubernetes.io/name: {{ include "sample.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: mep-kubeedge-adapter-samples
{{- end -}}

{{- define "sample.image" -}}
{{- $location := .Values.imagelocation -}}
{{- $prefix := "" -}}
{{- if $location.domainname -}}
{{- $prefix = printf "%s/" $location.domainname -}}
{{- if $location.project -}}
{{- $prefix = printf "%s%s/" $prefix $location.project -}}
{{- end -}}
{{- end -}}
{{- printf "%s%s:%s" $prefix .Values.image.name (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "sample.identitySecret" -}}
{{- .Values.appconfig.aksk.secretname | default (printf "%s-mep-identity" (include "sample.fullname" .)) -}}
{{- end -}}

{{- define "sample.caSecret" -}}
{{- .Values.mep.ca.secretName | default (printf "%s-mep-ca" (include "sample.fullname" .)) -}}
{{- end -}}

{{- define "sample.hasCa" -}}
{{- if or .Values.mep.ca.secretName .Values.mep.ca.certificate -}}true{{- end -}}
{{- end -}}

{{- define "sample.mepUrl" -}}
{{- if .Values.mep.url -}}
{{- .Values.mep.url -}}
{{- else if .Values.global.ssl.enabled -}}
https://mep-api-gw.mep:8443
{{- else -}}
http://mep-api-gw.mep:8000
{{- end -}}
{{- end -}}

{{- define "sample.validate" -}}
{{- $aksk := .Values.appconfig.aksk -}}
{{- if and $aksk.accesskey (not $aksk.secretkey) -}}
{{- fail "appconfig.aksk.accesskey is set but appconfig.aksk.secretkey is empty" -}}
{{- end -}}
{{- if and $aksk.secretkey (not $aksk.accesskey) -}}
{{- fail "appconfig.aksk.secretkey is set but appconfig.aksk.accesskey is empty" -}}
{{- end -}}
{{- if and $aksk.accesskey (not $aksk.appInsId) -}}
{{- fail "appconfig.aksk.accesskey is set but appconfig.aksk.appInsId (the app instance id) is empty" -}}
{{- end -}}
{{- if and .Values.mep.ca.secretName .Values.mep.ca.certificate -}}
{{- fail "set mep.ca.secretName or mep.ca.certificate, not both" -}}
{{- end -}}
{{- end -}}
