#!/usr/bin/env bash
# Make sure the local PostgreSQL the tests use (PYNOMALY_TEST_PG_URL, default 127.0.0.1:5432) accepts connections.
set -euo pipefail
host="${PYNOMALY_TEST_PG_HOST:-127.0.0.1}"
port="${PYNOMALY_TEST_PG_PORT:-5432}"
if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "PostgreSQL at $host:$port is not accepting connections; starting the local cluster ..."
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do
    pg_isready -q -h "$host" -p "$port" && exit 0
    sleep 1
  done
fi
echo "PostgreSQL at $host:$port is not available: start it or set PYNOMALY_TEST_PG_URL" >&2
exit 1
