#!/usr/bin/env bash
# Create ./.venv and install Pynomaly with the given extras, pinned by constraints/ci.txt.
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. "" (core only) or "all,dev".
# Re-running is cheap: it reinstalls only when pyproject.toml, the constraints or the extras change.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$VENV/.pynomaly-installed"
want="$(cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/constraints/ci.txt" | sha256sum | cut -c1-16) [$EXTRAS]"
have="$(cat "$stamp" 2>/dev/null || true)"
# an install with more extras also satisfies a request for fewer
if [ "$have" != "$want" ] && ! { [ -z "$EXTRAS" ] && [ "${have%% *}" = "${want%% *}" ]; }; then
  spec="$REPO_ROOT"
  [ -n "$EXTRAS" ] && spec="$REPO_ROOT[$EXTRAS]"
  echo "Installing pynomaly${EXTRAS:+[$EXTRAS]} into $VENV (pinned by constraints/ci.txt) ..."
  "$VENV/bin/python" -m pip install --quiet -c "$REPO_ROOT/constraints/ci.txt" -e "$spec"
  echo "$want" > "$stamp"
fi
