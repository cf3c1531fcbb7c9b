#!/usr/bin/env bash
# One command: install everything (all extras, dev tools), make sure PostgreSQL is up, run the suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k export`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$REPO_ROOT/scripts/setup.sh" "all,dev"
bash "$REPO_ROOT/scripts/postgres.sh"
bash "$REPO_ROOT/scripts/browser.sh"  # chromium for the UI smoke test in tests/system
bash "$REPO_ROOT/scripts/proxy.sh"    # nginx and openssl for the authenticating proxy in tests/system
cd "$REPO_ROOT"
# the suite makes its own homes and instances; keep it off the developer's ./.pynomaly
unset PYNOMALY_HOME DAGSTER_HOME PYNOMALY_WAREHOUSE_URL PYNOMALY_FEEDS_DIR
# naming the server makes PostgreSQL tests fail (not skip) if it is unreachable
export PYNOMALY_TEST_PG_URL="${PYNOMALY_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
set +e
# two workers (the machines have 2 cores); --dist loadfile keeps each file's tests, and so its
# module-scoped story fixtures, on one worker instead of building them twice
"$VENV/bin/python" -m pytest -n "${PYNOMALY_TEST_WORKERS:-2}" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests (exit 5): treating as a failure" >&2
  exit 1
fi
exit "$status"
