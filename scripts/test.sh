#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (Python deps, Spark jars, services),
# starts the real services on 127.0.0.1, runs pytest, and stops the services again.
#   scripts/test.sh [pytest args...]      e.g. scripts/test.sh tests/unit -q
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP=127.0.0.1 CQUBE_SPARK_UI=0
export CQUBE_SHARED="${CQUBE_SHARED:-$ROOT/../shared}"

bash scripts/setup.sh
SERVICES="${CQUBE_TEST_SERVICES:-s3 postgres redis cassandra kafka keycloak}"
started_here=()
for svc in $SERVICES; do
  if ! bash scripts/services.sh status "$svc" >/dev/null 2>&1; then started_here+=("$svc"); fi
done
cleanup() { [ ${#started_here[@]} -eq 0 ] || bash scripts/services.sh stop "${started_here[@]}" || true; }
trap cleanup EXIT
# shellcheck disable=SC2086
bash scripts/services.sh start $SERVICES

if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
# The whole suite: two pytest workers side by side (each with its own SparkSession; a test file stays on one
# worker, so its module fixtures are built once). Most of a Spark test's time is driver-side latency (planning,
# small jobs, commits), so two of them share the 2 cores well. Tests marked `serial` (they stop a shared
# service or bind fixed ports) run afterwards, alone.
status=0
.venv/bin/python -m pytest -n "${CQUBE_TEST_WORKERS:-2}" --dist loadfile -m "not serial" tests || status=$?
.venv/bin/python -m pytest -m serial tests || status=$?
exit $status
