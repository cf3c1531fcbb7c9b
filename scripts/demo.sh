#!/usr/bin/env bash
# One command: install, then materialize the demo feed's whole asset graph (18 days) on the
# embedded defaults (SQLite Dagster instance and warehouse under ./.pynomaly). No server, no network.
# Afterwards: `bash scripts/dev.sh` opens the Dagster UI on the same instance.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$REPO_ROOT/scripts/setup.sh" ""
cd "$REPO_ROOT"
"$VENV/bin/python" -m pynomaly_assets.demo "$@"
