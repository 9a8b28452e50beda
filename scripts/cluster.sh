#!/usr/bin/env bash
# A local Spark standalone cluster (one master, one worker) on 127.0.0.1, from the pyspark wheel:
#   scripts/cluster.sh start|stop|status
# Then: cqube-spark run <job> --submit --master spark://127.0.0.1:7077
# Logs and pids under .services/spark/. Ports: CQUBE_SPARK_MASTER_PORT (7077), worker cores/memory below.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
SPARK_HOME="$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
export SPARK_HOME SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1
export SPARK_LOG_DIR="${CQUBE_SERVICES_DIR:-$ROOT/.services}/spark/log"
export SPARK_PID_DIR="${CQUBE_SERVICES_DIR:-$ROOT/.services}/spark/run"
export SPARK_WORKER_DIR="${CQUBE_SERVICES_DIR:-$ROOT/.services}/spark/work"
export PYSPARK_PYTHON="$PY"
MASTER_PORT="${CQUBE_SPARK_MASTER_PORT:-7077}"
MASTER_URL="spark://127.0.0.1:$MASTER_PORT"
WORKER_CORES="${CQUBE_SPARK_WORKER_CORES:-2}"
WORKER_MEMORY="${CQUBE_SPARK_WORKER_MEMORY:-4g}"
daemon() { bash "$SPARK_HOME/sbin/spark-daemon.sh" "$@"; }
mkdir -p "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$SPARK_WORKER_DIR"

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-status}" in
  start)
    if ! up "$MASTER_PORT"; then
      daemon start org.apache.spark.deploy.master.Master 1 --host 127.0.0.1 --port "$MASTER_PORT" \
        --webui-port "${CQUBE_SPARK_MASTER_UI_PORT:-8080}" >/dev/null
    fi
    for _ in $(seq 60); do up "$MASTER_PORT" && break; sleep 1; done
    up "$MASTER_PORT" || { echo "master did not start; see $SPARK_LOG_DIR" >&2; exit 1; }
    if ! daemon status org.apache.spark.deploy.worker.Worker 1 >/dev/null 2>&1; then
      daemon start org.apache.spark.deploy.worker.Worker 1 --host 127.0.0.1 --cores "$WORKER_CORES" \
        --memory "$WORKER_MEMORY" --webui-port "${CQUBE_SPARK_WORKER_UI_PORT:-8081}" "$MASTER_URL" >/dev/null
    fi
    # ready when the master reports an ALIVE worker
    for _ in $(seq 60); do
      if curl -s "http://127.0.0.1:${CQUBE_SPARK_MASTER_UI_PORT:-8080}/json/" | grep -q '"aliveworkers" *: *[1-9]'; then
        echo "spark cluster running at $MASTER_URL"; exit 0
      fi
      sleep 1
    done
    echo "worker did not register; see $SPARK_LOG_DIR" >&2; exit 1 ;;
  stop)
    daemon stop org.apache.spark.deploy.worker.Worker 1 >/dev/null 2>&1 || true
    daemon stop org.apache.spark.deploy.master.Master 1 >/dev/null 2>&1 || true
    echo "spark cluster stopped" ;;
  status)
    if up "$MASTER_PORT"; then echo "spark cluster running at $MASTER_URL"; else echo "spark cluster stopped"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
