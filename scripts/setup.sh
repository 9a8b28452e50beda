#!/usr/bin/env bash
# One-time (idempotent) setup on a fresh machine:
#   1. Python venv .venv with the pinned dependency tree (requirements.lock) and this package (-e .)
#   2. JVM jars for Spark (Delta, S3A + AWS SDK, Kafka source) resolved by Maven from scripts/jvm/spark/pom.xml
#      into .jars/, minus anything the pyspark wheel already bundles. Jobs never download at run time.
#   3. the driver JVM's class archive .jars/cqube-spark.jsa (class-data sharing: a local session starts ~4 s
#      sooner), made by a short warm-up job; optional: without it jobs run the same, only start slower.
#   4. the report's JavaScript (Apache ECharts, pinned in cqube_spark/report/web/package-lock.json) by npm ci
#   5. headless Chromium (Debian packages chromium + chromium-driver) for the report's browser tests
#      (CQUBE_BROWSER=0 skips it: the report itself needs no browser to be built)
# Re-running skips what is already in place (stamp files hold the hash of their inputs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
say() { printf '[setup] %s\n' "$*"; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 1. Python
req_hash="$(cat requirements.lock setup.py | sha256sum | cut -c1-16)"
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
if ! stamp_ok .venv/.cqube-stamp "$req_hash"; then
  say "installing Python dependencies (requirements.lock)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$req_hash" > .venv/.cqube-stamp
else
  say "Python dependencies up to date"
fi

# 2. JVM jars
jar_hash="$(sha256sum scripts/jvm/spark/pom.xml | cut -c1-16)"
if ! stamp_ok .jars/.cqube-stamp "$jar_hash"; then
  say "resolving Spark jars with Maven (scripts/jvm/spark/pom.xml)"
  rm -rf .jars && mkdir -p .jars
  mvn -q -B -f scripts/jvm/spark/pom.xml dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$ROOT/.jars"
  # Drop artifacts the pyspark wheel already ships (any version): one copy of each class on the classpath.
  pyspark_jars="$(.venv/bin/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
  artifact() { basename "$1" .jar | sed -E 's/-[0-9][0-9A-Za-z.+_-]*$//'; }
  declare -A bundled=()
  for j in "$pyspark_jars"/*.jar; do bundled["$(artifact "$j")"]=1; done
  for j in .jars/*.jar; do
    a="$(artifact "$j")"
    case "$a" in
      # Spark modules are in the wheel; log4j/slf4j/jackson/hadoop-client come from Spark's own versions.
      spark-tags_2.13|scala-library|log4j-*|slf4j-*|jackson-*|hadoop-client-*|commons-logging) rm -f "$j"; continue;;
    esac
    if [ -n "${bundled[$a]:-}" ]; then rm -f "$j"; fi
  done
  echo "$jar_hash" > .jars/.cqube-stamp
  say "$(ls .jars/*.jar | wc -l) jars in .jars/"
else
  say "Spark jars up to date ($(ls .jars/*.jar | wc -l) in .jars/)"
fi
# 3. class archive (rebuilt when the JVM, the jars or the Python dependencies change)
archive_hash="$( { java -version 2>&1; cat .jars/.cqube-stamp .venv/.cqube-stamp; } | sha256sum | cut -c1-16)"
if [ "${CQUBE_JVM_ARCHIVE:-1}" = "0" ]; then
  say "class archive skipped (CQUBE_JVM_ARCHIVE=0)"
elif [ -f .jars/cqube-spark.jsa ] && stamp_ok .jars/.archive-stamp "$archive_hash"; then
  say "class archive up to date"
else
  rm -f .jars/cqube-spark.jsa .jars/.archive-stamp
  say "building the driver JVM's class archive (scripts/jvm/class_archive.py)"
  if .venv/bin/python scripts/jvm/class_archive.py; then
    echo "$archive_hash" > .jars/.archive-stamp
  else
    say "WARNING: no class archive; jobs run without it (each Spark session starts ~4 s slower)"
  fi
fi
# 4. report JavaScript (npm registry, exact versions from the committed lock file; no CDN at run time)
web=cqube_spark/report/web
web_hash="$(cat "$web/package.json" "$web/package-lock.json" | sha256sum | cut -c1-16)"
if [ -f "$web/node_modules/echarts/dist/echarts.min.js" ] && stamp_ok "$web/node_modules/.cqube-stamp" "$web_hash"; then
  say "report JavaScript up to date"
else
  command -v npm >/dev/null || { say "ERROR: npm not found (Debian: apt-get install npm)"; exit 1; }
  say "installing the report's JavaScript (npm ci in $web)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$web_hash" > "$web/node_modules/.cqube-stamp"
fi
# 5. headless Chromium for the report's browser tests (Playwright drives the system browser; it downloads none)
if [ "${CQUBE_BROWSER:-1}" = "0" ]; then
  say "Chromium skipped (CQUBE_BROWSER=0)"
elif [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  say "Chromium present ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
else
  say "installing Chromium (Debian packages chromium, chromium-driver)"
  sudo_="" ; [ "$(id -u)" = "0" ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
fi
say "done: activate with 'source .venv/bin/activate' or call .venv/bin/cqube-spark"
