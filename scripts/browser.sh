#!/usr/bin/env bash
# Make sure a headless browser for the UI smoke test (tests/system) is installed: Debian's chromium.
# Installs it with apt-get when missing (scripts/apt.sh).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_install chromium chromium fonts-dejavu-core
command -v chromium >/dev/null 2>&1
