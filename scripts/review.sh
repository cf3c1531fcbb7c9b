#!/usr/bin/env bash
# Open the review page (http://127.0.0.1:3100) on the embedded demo warehouse
# ($PYNOMALY_HOME/warehouse.db), running the demo first when there is none; or on the warehouse
# PYNOMALY_WAREHOUSE_URL names. Reviewer: $PYNOMALY_REVIEWER (default: your login name).
# Arguments go to `python -m pynomaly_review` (--host, --port). docs/review.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$REPO_ROOT/scripts/setup.sh" ""
cd "$REPO_ROOT"
if ! "$VENV/bin/python" -c "import fastapi, uvicorn, jinja2, python_multipart" 2>/dev/null; then
  echo "Installing the review page's extra pynomaly[review] into $VENV (pinned by constraints/ci.txt) ..."
  "$VENV/bin/python" -m pip install --quiet -c "$REPO_ROOT/constraints/ci.txt" -e "$REPO_ROOT[review]"
fi
if [ -z "${PYNOMALY_WAREHOUSE_URL:-}" ] && [ ! -f "$PYNOMALY_HOME/warehouse.db" ]; then
  echo "No warehouse at $PYNOMALY_HOME/warehouse.db yet: running the demo first (bash scripts/demo.sh) ..."
  "$VENV/bin/python" -m pynomaly_assets.demo
fi
export PYNOMALY_REVIEWER="${PYNOMALY_REVIEWER:-${USER:-$(id -un)}}"
exec "$VENV/bin/python" -m pynomaly_review "$@"
