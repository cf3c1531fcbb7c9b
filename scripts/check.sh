#!/usr/bin/env bash
# Static quality gates, run by scripts/test.sh (and so by CI) before the suite:
#   ruff check, ruff format --check      the whole tree
#   mypy --strict pynomaly_core, pynomaly_review   the library and the review page; mypy (defaults) on pynomaly_assets
#   bandit, medium severity and up       0 findings, except lines that say why they are accepted
# The coverage floor is enforced by scripts/test.sh on the suite's own run (PYNOMALY_COVERAGE_FLOOR).
# Usage: bash scripts/check.sh   (expects the dev extra: bash scripts/setup.sh "all,dev")
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO_ROOT"
failed=()
step() {
  local name="$1"
  shift
  echo "== $name"
  if ! "$@"; then
    failed+=("$name")
  fi
}

step "ruff check" "$VENV/bin/ruff" check .
step "ruff format --check" "$VENV/bin/ruff" format --check --quiet .
step "mypy --strict pynomaly_core" "$VENV/bin/mypy" --strict pynomaly_core
step "mypy --strict pynomaly_review" "$VENV/bin/mypy" --strict pynomaly_review
# the wiring at mypy's default strictness; the library's own errors are reported by the step above
step "mypy pynomaly_assets" "$VENV/bin/mypy" --follow-imports=silent pynomaly_assets
# -ll: medium severity and up. An accepted finding carries `# nosec BXXX: <reason>` on its line;
# a bare `# nosec` (no test id or no reason) is itself a failure, so nothing is silenced unexplained.
step "bandit (medium and up)" "$VENV/bin/bandit" -q -r pynomaly_core pynomaly_assets pynomaly_review -ll
unexplained() {
  local bare
  bare="$(grep -rnE '#\s*nosec' --include='*.py' pynomaly_core pynomaly_assets pynomaly_review \
    | grep -vE '#\s*nosec B[0-9]{3}(,\s*B[0-9]{3})*:\s*\S' || true)"
  if [ -n "$bare" ]; then
    echo "bandit exceptions without a test id and a reason (write '# nosec B608: why'):" >&2
    echo "$bare" >&2
    return 1
  fi
}
step "bandit exceptions explained" unexplained

if [ "${#failed[@]}" -gt 0 ]; then
  echo "check.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "check.sh: all gates passed"
