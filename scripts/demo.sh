#!/usr/bin/env bash
# The main job end to end on the embedded default (local folders as buckets, local Spark):
# set up, generate a sample state into ./data/emission, run the pipeline, show where the results are.
#   scripts/demo.sh                 (CQUBE_DATA_ROOT=./data by default; any s3a:// root works too)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export CQUBE_DATA_ROOT="${CQUBE_DATA_ROOT:-$ROOT/data}"

bash scripts/setup.sh
echo "[demo] generating the sample state under $CQUBE_DATA_ROOT/emission"
.venv/bin/python scripts/generate_sample_data.py --out "$CQUBE_DATA_ROOT/emission" \
    --schools "${DEMO_SCHOOLS:-160}" --students-per-school "${DEMO_STUDENTS:-30}" \
    --months "${DEMO_MONTHS:-2020-06,2020-07}" | tail -1
echo "[demo] running the load-attendance job"
.venv/bin/cqube-spark run load-attendance
echo "[demo] results:"
echo "  Delta table:  $CQUBE_DATA_ROOT/lake/bronze/student_attendance"
echo "  job runs:     $CQUBE_DATA_ROOT/lake/meta/job_runs"
