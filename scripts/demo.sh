#!/usr/bin/env bash
# The main pipeline end to end on the embedded default (local folders as buckets, local Spark):
# set up, generate a sample state for every source into ./data/emission, run intake -> validation ->
# indicators -> publish (`cqube-spark run pipeline`), print the summary and where to look.
#   scripts/demo.sh                 (CQUBE_DATA_ROOT=./data by default; any s3a:// root works too)
#   DEMO_SCHOOLS=160 DEMO_STUDENTS=30 DEMO_MONTHS=2020-06,2020-07 scripts/demo.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"
export CQUBE_DATA_ROOT="${CQUBE_DATA_ROOT:-$ROOT/data}"

bash scripts/setup.sh
echo "[demo] generating the sample state (all sources) under $CQUBE_DATA_ROOT/emission"
.venv/bin/python scripts/generate_sample_data.py --out "$CQUBE_DATA_ROOT/emission" \
    --schools "${DEMO_SCHOOLS:-160}" --students-per-school "${DEMO_STUDENTS:-30}" \
    --months "${DEMO_MONTHS:-2020-06,2020-07}" --sources all | tail -1
echo "[demo] running the pipeline: intake -> validation -> indicators -> publish -> report"
.venv/bin/cqube-spark run pipeline 2> "$CQUBE_DATA_ROOT/pipeline.log" || {
    echo "[demo] the pipeline failed; the JSON log is in $CQUBE_DATA_ROOT/pipeline.log" >&2
    tail -5 "$CQUBE_DATA_ROOT/pipeline.log" >&2
    exit 1
}
echo "[demo] JSON log of the run: $CQUBE_DATA_ROOT/pipeline.log; outputs layout: docs/outputs.md; report: docs/report.md"
