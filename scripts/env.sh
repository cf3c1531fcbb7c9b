# Sourced by the other scripts: local state lives under the repository unless overridden.
# PYNOMALY_HOME   models, frames, the embedded SQLite warehouse (default ./.pynomaly)
# DAGSTER_HOME    the local Dagster instance (default ./.pynomaly/dagster_home, with ./dagster.yaml)
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYNOMALY_HOME="${PYNOMALY_HOME:-$REPO_ROOT/.pynomaly}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PYNOMALY_HOME/dagster_home}"
mkdir -p "$DAGSTER_HOME"
cp "$REPO_ROOT/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
VENV="${PYNOMALY_VENV:-$REPO_ROOT/.venv}"
