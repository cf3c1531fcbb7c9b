#!/usr/bin/env bash
# Open the Dagster UI (http://127.0.0.1:3000) on the local instance the demo wrote to.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$REPO_ROOT/scripts/setup.sh" ""
cd "$REPO_ROOT"
exec "$VENV/bin/dagster" dev -w workspace.yaml "$@"
