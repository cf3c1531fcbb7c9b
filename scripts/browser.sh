#!/usr/bin/env bash
# Make sure a headless browser for the UI smoke test (tests/system) is installed: Debian's chromium.
# Installs it with apt-get when missing (as root, or through sudo when that works without a password).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "chromium is not installed and this user cannot run apt-get: install Debian's chromium package" >&2
  exit 1
fi
echo "chromium is not installed; installing it with apt-get ..."
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1
