{{/*
Names. fullname is the release name when it already contains the chart name (so a release
called mep-kubeedge-adapter yields the names the kustomize base uses), else
<release>-mep-kubeedge-adapter; every object name and the selector derive from it, so two
releases (two MECM app instances, say) never select each other's pods.
*/}}
{{- define "mka.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The Service's name must be an RFC 1035 label, which starts with a letter; an MECM app
instance's release name is its UUID, which often starts with a digit.
*/}}
{{- define "mka.serviceName" -}}
{{- $name := include "mka.fullname" . -}}
{{- if regexMatch "^[a-z]" $name -}}
{{- $name -}}
{{- else -}}
{{- printf "mka-%s" $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* EdgeGallery's convention: appconfig.appnamespace, else the release namespace. */}}
{{- define "mka.namespace" -}}
{{- .Values.appconfig.appnamespace | default .Release.Namespace -}}
{{- end -}}

{{- define "mka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mka.fullname" . }}
app.kubernetes.io/component: adapter
{{- end -}}

{{- define "mka.labels" -}}
app.kubernetes.io/name: {{ include "mka.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: mep-kubeedge-adapter
{{- end -}}

{{/* <domainname>/<project>/<name>:<tag>, EdgeGallery's imagelocation convention. */}}
{{- define "mka.image" -}}
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

{{- define "mka.identitySecret" -}}
{{- .Values.appconfig.aksk.secretname | default (printf "%s-mep-identity" (include "mka.fullname" .)) -}}
{{- end -}}

{{- define "mka.caSecret" -}}
{{- .Values.mep.ca.secretName | default (printf "%s-mep-ca" (include "mka.fullname" .)) -}}
{{- end -}}

{{- define "mka.hasCa" -}}
{{- if or .Values.mep.ca.secretName .Values.mep.ca.certificate -}}true{{- end -}}
{{- end -}}

{{- define "mka.mepUrl" -}}
{{- if .Values.mep.url -}}
{{- .Values.mep.url -}}
{{- else if .Values.global.ssl.enabled -}}
https://mep-api-gw.mep:8443
{{- else -}}
http://mep-api-gw.mep:8000
{{- end -}}
{{- end -}}

{{/* Cross-field rules the schema cannot express, checked before anything renders. */}}
{{- define "mka.validate" -}}
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
