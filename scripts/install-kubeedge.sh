#!/usr/bin/env bash
# Install KubeEdge for mep-kubeedge-adapter with keadm: the cloud side (cloudcore, the device
# CRDs and the EventBus broker DaemonSet for edge nodes) or one edge node (edgecore), and,
# when asked, EdgeCore's MetaServer so the adapter can read Device/DeviceModel CRs on the edge.
#
#   scripts/install-kubeedge.sh cloud --advertise-address 192.0.2.10 [--metaserver]
#   scripts/install-kubeedge.sh edge --cloudcore 192.0.2.10:10000 --token "$(keadm gettoken)" \
#       [--node-name edge-node-1] [--metaserver]
#
# Idempotent: each step first checks whether its result is already there (cloudcore deployed,
# broker DaemonSet present, edgecore running, MetaServer enabled) and skips it if so; running it
# twice changes nothing. --dry-run prints every command instead of running it (read-only checks
# are printed too, and answered "not there yet", so the output is the full sequence).
#
# Needs: bash, keadm (matching --kubeedge-version) on PATH; kubectl with cluster-admin rights on
# the cloud side; root, systemd and a CRI runtime (containerd by default) on an edge node.
#
# Before it joins a node, `edge` checks that EdgeCore can have it: no kubelet or kube-proxy
# running (EdgeCore's edged is a kubelet; two cannot share a node, docs/operator-guide.md,
# "Can EdgeCore share a node with a kubelet?") and the ports EdgeCore listens on free. It
# refuses with exit status 3 and says what it found, unless --force. It reads /proc only (or
# the directory in INSTALL_KUBEEDGE_PROC, which the tests fill with fixtures).
set -euo pipefail

readonly DEFAULT_VERSION="v1.23.1"
readonly KUBEEDGE_NS="kubeedge"
readonly BROKER_DAEMONSET="edge-eclipse-mosquitto"
readonly EDGECORE_CONFIG="/etc/kubeedge/config/edgecore.yaml"
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR
readonly BROKER_MANIFEST="${REPO_DIR}/manifests/kubeedge/mosquitto.yaml"
readonly PROC_ROOT="${INSTALL_KUBEEDGE_PROC:-/proc}"
# Ports EdgeCore v1.23 binds on the edge node (staging/src/github.com/kubeedge/api/apis/
# componentconfig/edgecore/v1alpha2/default*.go): edged's read-only kubelet API, and the
# MetaServer when it is enabled.
readonly EDGED_PORT=10350
readonly METASERVER_PORT=10550
# Ports that give away a running kubelet or kube-proxy whatever its process is called
# (k3s, for one, runs the kubelet inside its own process).
readonly KUBELET_PORT=10250
readonly KUBE_PROXY_HEALTH_PORT=10256
readonly BROKER_PORT=1883

DRY_RUN=0
FORCE=0
ROLE=""
VERSION="${DEFAULT_VERSION}"
METASERVER=0
ADVERTISE_ADDRESS=""
KUBECONFIG_PATH="${KUBECONFIG:-${HOME:-/root}/.kube/config}"
CLOUDCORE=""
TOKEN="${KEADM_TOKEN:-}"
NODE_NAME=""
RUNTIME_ENDPOINT="unix:///run/containerd/containerd.sock"
CGROUP_DRIVER="systemd"

usage() {
  cat <<'EOF'
usage: install-kubeedge.sh cloud|edge [options]

common:
  --kubeedge-version V     KubeEdge release (default v1.23.1)
  --metaserver             enable the edge MetaServer (cloud: cloudcore dynamicController,
                           edge: modules.metaManager.metaServer in edgecore.yaml)
  --dry-run                print each command instead of running it
  -h, --help               this text

cloud:
  --advertise-address IP   address(es) edge nodes use to reach cloudcore (required)
  --kubeconfig PATH        kubeconfig for keadm and kubectl (default $KUBECONFIG or ~/.kube/config)

edge:
  --cloudcore HOST[:PORT]  cloudcore's address (required; port 10000 when omitted)
  --token TOKEN            join token from 'keadm gettoken' on the cloud side (or env KEADM_TOKEN)
  --node-name NAME         node name (default: this host's name)
  --runtime-endpoint URI   CRI socket (default unix:///run/containerd/containerd.sock)
  --cgroup-driver D        systemd or cgroupfs (default systemd)
  --force                  join even though the preflight found a kubelet, a kube-proxy or a
                           busy EdgeCore port (it still prints what it found)
EOF
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'install-kubeedge: %s\n' "$*" >&2; exit 2; }

# Print a command as one shell-quoted line; the join token is masked.
show() {
  local out="" arg
  for arg in "$@"; do
    if [[ "${arg}" == --token=* ]]; then
      out+="--token=*** "
    else
      out+="$(printf '%q' "${arg}") "
    fi
  done
  printf '%s\n' "${out% }"
}

# A command that changes something: printed with --dry-run, run otherwise.
run() {
  if (( DRY_RUN )); then
    printf '+ '
    show "$@"
  else
    printf '+ ' >&2
    show "$@" >&2
    "$@"
  fi
}

# A read-only check: with --dry-run printed (on stderr, "? ...") and answered "no", so the dry
# run shows every step. stdout of a dry run is exactly the commands that would change something.
probe() {
  if (( DRY_RUN )); then
    printf '? %s\n' "$(show "$@")" >&2
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# A read-only command whose output is the answer: printed with --dry-run (answer: empty).
probe_output() {
  if (( DRY_RUN )); then
    printf '? %s\n' "$(show "$@")" >&2
    return 0
  fi
  "$@" 2>/dev/null || true
}

need() {
  (( DRY_RUN )) && return 0
  command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH ($2)"
}

parse_args() {
  [[ $# -gt 0 ]] || { usage >&2; exit 2; }
  case "$1" in
    cloud|edge) ROLE="$1"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "first argument must be 'cloud' or 'edge', not '$1'" ;;
  esac
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --force) FORCE=1 ;;
      --metaserver) METASERVER=1 ;;
      --kubeedge-version) VERSION="${2:?--kubeedge-version needs a value}"; shift ;;
      --advertise-address) ADVERTISE_ADDRESS="${2:?--advertise-address needs a value}"; shift ;;
      --kubeconfig) KUBECONFIG_PATH="${2:?--kubeconfig needs a value}"; shift ;;
      --cloudcore) CLOUDCORE="${2:?--cloudcore needs a value}"; shift ;;
      --token) TOKEN="${2:?--token needs a value}"; shift ;;
      --node-name) NODE_NAME="${2:?--node-name needs a value}"; shift ;;
      --runtime-endpoint) RUNTIME_ENDPOINT="${2:?--runtime-endpoint needs a value}"; shift ;;
      --cgroup-driver) CGROUP_DRIVER="${2:?--cgroup-driver needs a value}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
  done
  [[ "${VERSION}" == v* ]] || VERSION="v${VERSION}"
  [[ "${VERSION}" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "--kubeedge-version must look like v1.23.1"
  local minor="${VERSION#v1.}"
  minor="${minor%%.*}"
  if (( minor < 17 )); then
    log "warning: KubeEdge ${VERSION} predates namespaced device topics; 1.16.0 and 1.16.1 drop twin updates of CRD devices (avoid them)"
  fi
}

# The value of the first "enable:" at or after the line naming SECTION (stdin: YAML text), as
# keadm writes edgecore.yaml and cloudcore.yaml ("metaServer:" then "enable: false").
first_enable_after() {
  awk -v section="$1:" '
    index($0, section) { found = 1 }
    found && $1 == "enable:" { print $2; exit }'
}

# ------------------------------------------------------------------------------ cloud

cloud() {
  [[ -n "${ADVERTISE_ADDRESS}" ]] || die "cloud needs --advertise-address"
  need keadm "download it from the KubeEdge release ${VERSION}"
  need kubectl "the cloud side is installed into the cluster kubectl points at"

  if probe kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" get deployment cloudcore; then
    log "cloudcore is already deployed: skipping keadm init"
    if (( METASERVER )); then
      cloud_enable_dynamic_controller
    fi
  else
    local args=(keadm init "--advertise-address=${ADVERTISE_ADDRESS}"
                "--kubeedge-version=${VERSION}" "--kube-config=${KUBECONFIG_PATH}"
                --set mosquitto.enable=true)
    if (( METASERVER )); then
      # MetaServer answers list/get from the cloud through cloudcore's dynamicController.
      args+=(--set cloudCore.modules.dynamicController.enable=true)
    fi
    run "${args[@]}"
  fi

  if probe kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" get daemonset "${BROKER_DAEMONSET}"; then
    log "EventBus broker DaemonSet ${BROKER_DAEMONSET} exists: leaving it alone"
  else
    [[ -f "${BROKER_MANIFEST}" ]] || die "missing ${BROKER_MANIFEST}"
    run kubectl --kubeconfig "${KUBECONFIG_PATH}" apply -f "${BROKER_MANIFEST}"
  fi

  log "cloud side ready. Join each edge node with:"
  log "  scripts/install-kubeedge.sh edge --cloudcore ${ADVERTISE_ADDRESS%%,*}:10000 --token \"\$(keadm gettoken --kube-config=${KUBECONFIG_PATH})\"$( (( METASERVER )) && printf ' --metaserver')"
}

cloud_enable_dynamic_controller() {
  local config
  config="$(probe_output kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" \
            get configmap cloudcore -o yaml)"
  if [[ "$(first_enable_after dynamicController <<<"${config}")" == "true" ]]; then
    log "cloudcore dynamicController is already enabled"
    return
  fi
  log "enabling cloudcore dynamicController (cloudcore ConfigMap, then a restart)"
  local edit='/dynamicController:/,/enable:/ s/enable: false/enable: true/'
  if (( DRY_RUN )); then
    printf '+ %s | %s\n' "$(show sed "${edit}")" \
      "$(show kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" apply -f -)"
  else
    sed "${edit}" <<<"${config}" \
      | kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" apply -f -
  fi
  run kubectl --kubeconfig "${KUBECONFIG_PATH}" -n "${KUBEEDGE_NS}" rollout restart deployment cloudcore
}

# ------------------------------------------------------------------------------ edge

edge() {
  [[ -n "${CLOUDCORE}" ]] || die "edge needs --cloudcore HOST[:PORT]"
  [[ "${CLOUDCORE}" == *:* ]] || CLOUDCORE="${CLOUDCORE}:10000"
  [[ -n "${NODE_NAME}" ]] || NODE_NAME="$(hostname)"
  if (( ! DRY_RUN )) && [[ "$(id -u)" != "0" ]]; then
    die "edge must run as root (keadm join installs a systemd service)"
  fi
  need keadm "download it from the KubeEdge release ${VERSION}"
  need systemctl "keadm join runs edgecore as a systemd service"

  if probe systemctl is-active --quiet edgecore; then
    log "edgecore is already running: skipping keadm join"
  else
    [[ -n "${TOKEN}" ]] || die "edge needs --token (run 'keadm gettoken' on the cloud side)"
    edge_preflight
    run keadm join "--cloudcore-ipport=${CLOUDCORE}" "--token=${TOKEN}" \
      "--edgenode-name=${NODE_NAME}" "--kubeedge-version=${VERSION}" \
      "--remote-runtime-endpoint=${RUNTIME_ENDPOINT}" "--cgroupdriver=${CGROUP_DRIVER}"
  fi

  if (( METASERVER )); then
    edge_enable_metaserver
  fi

  if [[ -z "$(probe_output ss -Hltn 'sport = :1883')" ]]; then
    log "note: nothing listens on 1883 yet. The broker DaemonSet (${BROKER_DAEMONSET}) starts once"
    log "      the node is Ready; until then EdgeCore logs 'connection refused' for 127.0.0.1:1883."
  fi
  log "edge node ${NODE_NAME} done. Deploy the adapter from the cloud side:"
  log "  kubectl apply -k manifests/overlays/edgegallery   (or manifests/overlays/lab)"
}

# "pid name" of every running kubelet, kube-proxy, or Kubernetes agent with a kubelet built in,
# by process name and by the program the command line started.
running_kube_processes() {
  local dir pid comm exe name
  for dir in "${PROC_ROOT}"/[0-9]*; do
    pid="${dir##*/}"
    [[ "${pid}" =~ ^[0-9]+$ ]] || continue
    # Builtins only (no process per process); a process may end while we read it.
    comm="" exe=""
    { IFS= read -r comm <"${dir}/comm"; } 2>/dev/null || continue
    { IFS= read -r -d '' exe <"${dir}/cmdline"; } 2>/dev/null || true
    exe="${exe##*/}"
    for name in "${comm}" "${exe}"; do
      case "${name}" in
        kubelet|kube-proxy|k3s|k3s-server|k3s-agent|kubelite)
          printf '%s %s\n' "${pid}" "${name}"
          break ;;
      esac
    done
  done
}

# Every local TCP port in LISTEN state (IPv4 and IPv6), one decimal number per line.
listening_ports() {
  local file hex
  for file in "${PROC_ROOT}/net/tcp" "${PROC_ROOT}/net/tcp6"; do
    [[ -r "${file}" ]] || continue
    # Columns: sl local_address rem_address st ...; state 0A is LISTEN.
    awk 'NR > 1 && $4 == "0A" { sub(/.*:/, "", $2); print $2 }' "${file}"
  done | while read -r hex; do
    [[ "${hex}" =~ ^[0-9A-Fa-f]{1,4}$ ]] && printf '%d\n' "$((16#${hex}))"
  done | sort -un
}

# EdgeCore's edged is a kubelet: refuse to join a node that runs another one (or kube-proxy),
# or whose EdgeCore ports are taken. EdgeCore checks kubelet/kube-proxy itself, but only by
# process name, and skips the check when the MetaServer is enabled (edge/cmd/edgecore/app/
# server.go, environmentCheck), so this is the check that always runs.
edge_preflight() {
  local problems=() warnings=() line ports
  if (( DRY_RUN )); then
    printf '? preflight: processes and listening ports in %s\n' "${PROC_ROOT}" >&2
  fi
  while read -r line; do
    [[ -n "${line}" ]] || continue
    problems+=("${line#* } is running (pid ${line%% *}): EdgeCore's edged is a kubelet and cannot share the node with it")
  done < <(running_kube_processes)
  ports="$(listening_ports)"
  if grep -qx "${KUBELET_PORT}" <<<"${ports}"; then
    problems+=("port ${KUBELET_PORT} is in use: that is the kubelet's port, so a kubelet runs here")
  fi
  if grep -qx "${KUBE_PROXY_HEALTH_PORT}" <<<"${ports}"; then
    problems+=("port ${KUBE_PROXY_HEALTH_PORT} is in use: that is kube-proxy's health port, so kube-proxy runs here")
  fi
  if grep -qx "${EDGED_PORT}" <<<"${ports}"; then
    problems+=("port ${EDGED_PORT} is in use: edged serves its read-only kubelet API there")
  fi
  if (( METASERVER )) && grep -qx "${METASERVER_PORT}" <<<"${ports}"; then
    problems+=("port ${METASERVER_PORT} is in use: EdgeCore's MetaServer listens there (--metaserver)")
  fi
  if grep -qx "${BROKER_PORT}" <<<"${ports}"; then
    warnings+=("port ${BROKER_PORT} is in use already: EdgeCore's EventBus will use that broker, and the ${BROKER_DAEMONSET} DaemonSet cannot start on this node")
  fi
  for line in ${warnings[@]+"${warnings[@]}"}; do
    log "preflight warning: ${line}"
  done
  if (( ${#problems[@]} == 0 )); then
    log "preflight: no kubelet or kube-proxy running, EdgeCore's ports are free"
    return
  fi
  for line in "${problems[@]}"; do
    printf 'install-kubeedge: preflight: %s\n' "${line}" >&2
  done
  if (( FORCE )); then
    log "preflight: --force given, joining anyway"
    return
  fi
  printf 'install-kubeedge: refusing to join this node. A KubeEdge edge node runs EdgeCore instead of a kubelet: use a node (or VM) without one, see docs/operator-guide.md ("Can EdgeCore share a node with a kubelet?"), or pass --force.\n' >&2
  exit 3
}

edge_enable_metaserver() {
  if [[ "$(probe_output cat "${EDGECORE_CONFIG}" | first_enable_after metaServer)" == "true" ]]; then
    log "MetaServer is already enabled in ${EDGECORE_CONFIG}"
    return
  fi
  if (( ! DRY_RUN )); then
    [[ -f "${EDGECORE_CONFIG}" ]] || die "missing ${EDGECORE_CONFIG}: did keadm join succeed?"
    grep -q 'metaServer:' "${EDGECORE_CONFIG}" || die "no metaServer section in ${EDGECORE_CONFIG}"
  fi
  run cp -p "${EDGECORE_CONFIG}" "${EDGECORE_CONFIG}.before-metaserver"
  run sed -i '/metaServer:/,/enable:/ s/enable: false/enable: true/' "${EDGECORE_CONFIG}"
  run systemctl restart edgecore
}

main() {
  parse_args "$@"
  if (( DRY_RUN )); then
    log "dry run: commands are printed, nothing is changed"
  fi
  "${ROLE}"
}

main "$@"
