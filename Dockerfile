# syntax=docker/dockerfile:1
#
# mep-kubeedge-adapter images. Two targets:
#
#   runtime (the default)  the adapter for every KubeEdge edge node, with the lab tools
#                          (simulate-device, mep-emulator) and the sample edge app
#   mecm-plugin            the KubeEdge plugin for EdgeGallery's MECM (`mecm-plugin`), which
#                          runs in the cloud beside lcmcontroller
#
#   docker build -t mep-kubeedge-adapter:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#     --build-arg SOURCE="<URL of your source repository>" .
#   docker build --target mecm-plugin -t mep-kubeedge-adapter-mecm:0.1.0 <same build args> .
#
# Why two images: the plugin needs the `mecm` extra, and Helm's engine (helm-python-sdk, a
# native library of about 245 MB installed) plus grpcio are most of it. The adapter runs on
# every edge node, often small machines pulling over thin links, and never renders a chart;
# the plugin runs once, in the cloud. Both share the base image and the package, and differ
# only in the extra installed and the default command.
#
# A build stage installs the package with its extra and the dependencies into a virtual
# environment (pip, wheels and any compiler stay there); each final stage copies only that
# environment onto a fresh slim Python base and runs it as an unprivileged user. All stages
# use the same base image, so the interpreter the environment points at is the same.
#
# The entry point is the CLI; the adapter image's default command is `run`. It also runs the
# lab tools:
#   docker run --rm mep-kubeedge-adapter simulate-device --help
#   docker run --rm mep-kubeedge-adapter mep-emulator --host 0.0.0.0
# and the sample edge app:
#   docker run --rm --entrypoint python mep-kubeedge-adapter /opt/mka/examples/sample_app.py --help
# The `demo` verb needs a mosquitto binary, which neither image carries.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build-base

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/mka \
 && /opt/mka/bin/pip install --upgrade pip setuptools wheel

WORKDIR /src
COPY pyproject.toml README.md ./
COPY mep_kubeedge_adapter ./mep_kubeedge_adapter

# The adapter's environment: the package with the emulators' extra (the lab overlay's MEP
# emulator). pip, setuptools and wheel leave the environment before it is copied.
FROM build-base AS build
RUN /opt/mka/bin/pip install ".[emulators]" \
 && /opt/mka/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/mka -name '__pycache__' -type d -prune -exec rm -rf {} + \
 && /opt/mka/bin/python -m compileall -q /opt/mka/lib

# The plugin's environment: the package with the mecm extra (grpcio, protobuf, Helm's engine).
FROM build-base AS build-mecm
RUN /opt/mka/bin/pip install ".[mecm]" \
 && /opt/mka/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/mka -name '__pycache__' -type d -prune -exec rm -rf {} + \
 && /opt/mka/bin/python -m compileall -q /opt/mka/lib

# ---------------------------------------------------------------------------------------------
# What both images have: the labels, the unprivileged user, the environment, the CLI.
FROM ${BASE_IMAGE} AS runtime-base

# An ARG from before the first FROM is only visible in a stage that declares it again.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""

LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="mep-kubeedge-adapter" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify numeric users.
RUN groupadd --system --gid 10001 mka \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mka --no-create-home \
            --shell /usr/sbin/nologin mka \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mka

ENV PATH=/opt/mka/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

ENTRYPOINT ["mep-kubeedge-adapter"]

# ---------------------------------------------------------------------------------------------
# The KubeEdge plugin for MECM. It listens for lcmcontroller's gRPC calls (TLS, port 8096) and
# keeps kubeconfigs, packages and instance records in MKA_MECM__DATA_DIR, a volume.
FROM runtime-base AS mecm-plugin

LABEL org.opencontainers.image.title="mep-kubeedge-adapter-mecm" \
      org.opencontainers.image.description="The KubeEdge plugin for EdgeGallery MECM: deploys app packages to KubeEdge edge nodes"

RUN install -d -o 10001 -g 10001 -m 0750 /var/lib/mka-mecm
COPY --from=build-mecm /opt/mka /opt/mka
ENV MKA_MECM__DATA_DIR=/var/lib/mka-mecm

USER 10001:10001
WORKDIR /var/lib/mka-mecm
VOLUME ["/var/lib/mka-mecm"]
EXPOSE 8096

# gRPC over TLS: a TCP connect is what the image can check without credentials.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, socket; socket.create_connection(('127.0.0.1', int(os.environ.get('MKA_MECM__PORT', '8096'))), timeout=4).close()"]

CMD ["mecm-plugin"]

# ---------------------------------------------------------------------------------------------
# The adapter (the default target: the last stage).
FROM runtime-base AS runtime

LABEL org.opencontainers.image.title="mep-kubeedge-adapter" \
      org.opencontainers.image.description="KubeEdge device twins as ETSI MEC 011 (MP1) services on the EdgeGallery MEP"

COPY --from=build /opt/mka /opt/mka
# At fixed paths for the lab manifests: the demo device file (also inside the package) and the
# sample edge app.
COPY mep_kubeedge_adapter/demo_devices.yaml /opt/mka/share/demo_devices.yaml
COPY examples/sample_app.py /opt/mka/examples/sample_app.py

ENV MKA_STORE__PATH=/var/lib/mka/state.sqlite3

USER 10001:10001
WORKDIR /var/lib/mka
VOLUME ["/var/lib/mka"]
EXPOSE 8080

# Docker and Compose use this; Kubernetes uses the probes in the manifests instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('MKA_API__PORT', '8080'); sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % port, timeout=4).status == 200 else 1)"]

CMD ["run"]
