#!/usr/bin/env bash
# Make sure a mosquitto broker binary is available (the demo and the tests start
# private brokers on free loopback ports; see docs on brokers in the README).
set -euo pipefail
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing mosquitto (Debian package)..." >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null
  # The package's own service is not needed: every broker here is private.
  exit 0
fi
echo "mosquitto is missing: install it (e.g. 'sudo apt-get install -y mosquitto') and retry" >&2
exit 1
