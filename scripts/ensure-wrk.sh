#!/usr/bin/env bash
# Make sure the wrk HTTP load generator is available: `make bench` measures B4 with it
# (and nothing else, so figures from different machines compare).
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk (Debian package)..." >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
  exit 0
fi
echo "wrk is missing: install it (e.g. 'sudo apt-get install -y wrk') and retry; make bench measures B4 with wrk only" >&2
exit 1
