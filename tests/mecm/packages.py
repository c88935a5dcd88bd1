"""EdgeGallery-style app packages built in the tests (reference §3): a chart, then the CSAR."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Mapping

CHART_YAML = "apiVersion: v2\nname: {name}\nversion: 1.0.0\n"
VALUES_YAML = """\
appconfig:
  appnamespace: {namespace}
  aksk:
    accesskey: ""
    secretkey: ""
    appInsId: ""
    secretname: ""
global:
  mepagent:
    enabled: false
  namespace:
    enabled: false
imagelocation:
  domainname: swr.example
  project: edgegallery
image: {image}
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name | trunc 40 }}-app
  namespace: '{{ .Values.appconfig.appnamespace }}'
  labels:
    app: {{ .Chart.Name }}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {{ .Chart.Name }}
  template:
    metadata:
      labels:
        app: {{ .Chart.Name }}
    spec:
      containers:
        - name: app
          image: {{ .Values.imagelocation.domainname }}/{{ .Values.imagelocation.project }}/{{ .Values.image }}
          env:
            - name: APP_INSTANCE_ID
              value: {{ .Values.appconfig.aksk.appInsId | quote }}
        - name: sidecar
          image: {{ .Values.imagelocation.domainname }}/busybox:1
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Chart.Name }}-svc
  namespace: '{{ .Values.appconfig.appnamespace }}'
spec:
  type: NodePort
  selector:
    app: {{ .Chart.Name }}
  ports:
    - name: http
      port: 8080
      targetPort: 80
      nodePort: 30080
      protocol: TCP
"""
EG_NAMESPACE = """\
{{- if .Values.global.namespace.enabled }}
apiVersion: v1
kind: Namespace
metadata:
  name: {{ .Values.appconfig.appnamespace }}
{{- end }}
"""
EG_MEPAGENT = """\
{{- if .Values.global.mepagent.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-mepagent
  namespace: '{{ .Values.appconfig.appnamespace }}'
data:
  appInstanceId: {{ .Values.appconfig.aksk.appInsId | quote }}
{{- end }}
"""


def tgz(top: str, files: Mapping[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def chart(
    name: str = "demoapp",
    *,
    namespace: str = "edge-apps",
    image: str = "demoapp:1.0",
    replicas: int = 1,
) -> bytes:
    """An EdgeGallery-style chart: appconfig values, eg_template files behind global flags."""
    return tgz(
        name,
        {
            "Chart.yaml": CHART_YAML.format(name=name),
            "values.yaml": VALUES_YAML.format(namespace=namespace, image=image),
            "templates/deployment.yaml": DEPLOYMENT.replace("{replicas}", str(replicas)),
            "templates/service.yaml": SERVICE,
            "templates/eg_template/namespace.yaml": EG_NAMESPACE,
            "templates/eg_template/mepagent-configmap.yaml": EG_MEPAGENT,
        },
    )


TOSCA_META = """\
TOSCA-Meta-File-Version: 1.0
CSAR-Version: 1.1
Created-by: tests
Entry-Definitions: APPD/Definition/MainServiceTemplate.yaml
"""
APPD = """\
tosca_definitions_version: tosca_simple_profile_yaml_1_2
topology_template:
  node_templates:
    demoapp:
      type: tosca.nodes.nfv.Vdu.Compute
    app_configuration:
      type: tosca.nodes.nfv.app.configuration
      properties:
        appSupportMp1: true
"""


def mf(files: Mapping[str, bytes], *, name: str = "demoapp") -> str:
    lines = [
        "metadata:",
        f"app_product_name: {name}",
        "app_provider_id: tests",
        "app_package_version: 1.0",
        "app_release_data_time: 2026-01-01 00:00",
        "app_type: container",
        "app_package_description: test app",
        "",
    ]
    for source, data in files.items():
        lines += [
            f"Source: {source}",
            "Algorithm: SHA-256",
            f"Hash: {hashlib.sha256(data).hexdigest()}",
            "",
        ]
    return "\n".join(lines)


def csar_files(chart_bytes: bytes | None = None, *, name: str = "demoapp") -> dict[str, bytes]:
    """The files of a v1.x CSAR; the .mf hashes every other file."""
    files: dict[str, bytes] = {
        "TOSCA-Metadata/TOSCA.meta": TOSCA_META.encode(),
        "APPD/Definition/MainServiceTemplate.yaml": APPD.encode(),
        "Image/SwImageDesc.json": b'[{"id": "1", "name": "demoapp", "version": "1.0"}]',
        "Artifacts/ChangeLog.txt": b"1.0 first\n",
    }
    if chart_bytes is not None:
        files[f"Artifacts/Deployment/Charts/{name}.tgz"] = chart_bytes
    return files


def csar(files: Mapping[str, bytes] | None = None, *, with_mf: bool = True) -> bytes:
    files = dict(files if files is not None else csar_files(chart()))
    if with_mf:
        files["demoapp.mf"] = mf(files).encode()
    return zip_bytes(files)


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
