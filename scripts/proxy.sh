#!/usr/bin/env bash
# Make sure the authenticating reverse proxy of the compose stack (docker/proxy/) can run as a local
# process for the deployment test (tests/system): Debian's nginx, and openssl, which hashes the UI
# password into the proxy's htpasswd file. The proxy image installs the same two Debian packages,
# so the test runs the nginx the container runs. Installs them with apt-get when missing (scripts/apt.sh).
set -euo pipefail
installed() { { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } && command -v openssl >/dev/null 2>&1; }
if installed; then
  exit 0
fi
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_install "nginx or openssl" nginx openssl
installed
