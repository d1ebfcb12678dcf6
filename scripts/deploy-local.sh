#!/usr/bin/env bash
# The production stack on one machine (docs/deployment.md):
#
#   PostgreSQL   one cluster, two databases: the ledger and Airflow's metadata
#   Redis        Airflow's Celery broker
#   Airflow 3    api-server, scheduler, dag-processor, triggerer, one Celery worker
#   mosquitto    TLS listener, password file, ACLs
#   bridge       the query service over HTTPS with client certificates; a standing consumer
#                sharing the declaration events with the write-off DAG's consumer
#   customs      the customs single window simulator over HTTPS (mutual TLS), the endpoint the
#                certificates go to
#
# Every server listens on 127.0.0.1 only. Everything lives under one state folder (default
# var/deploy, or ELBRIDGE_DEPLOY_DIR): configuration, a local CA and its certificates, secrets,
# data, logs and pid files. Each process runs in its own process group, recorded in run/.
#
#   scripts/deploy-local.sh [start]      bring up what is not running (idempotent)
#   scripts/deploy-local.sh stop         stop everything, in reverse order, by process group
#   scripts/deploy-local.sh status       what runs, where, and the Airflow login
#   scripts/deploy-local.sh airflow ...  the airflow CLI with the stack's configuration
#   scripts/deploy-local.sh elbridge ... the bridge's CLI with the stack's configuration
#   scripts/deploy-local.sh customs ...  the same CLI as customs (e.g. customs-sim publish FILE)
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${ELBRIDGE_DEPLOY_DIR:-$PROJECT/var/deploy}
mkdir -p "$STATE" # with the caller's umask: the postgres user must pass through its parents
chmod 0711 "$STATE" # searchable, not listable: the postgres user reaches its own folder in it
STATE=$(cd "$STATE" && pwd)
umask 077 # keys, passwords, data and logs: readable by their owner only
VENV_BIN=$PROJECT/.venv/bin
# The stack's configuration is exactly what its files say: nothing from the caller's AIRFLOW*
# or ELBRIDGE_* variables (but this script's own ELBRIDGE_DEPLOY_*) reaches its processes.
for var in $(compgen -e); do
  case $var in
  ELBRIDGE_DEPLOY_* | ELBRIDGE_WITH_POSTGRES) ;;
  ELBRIDGE_* | AIRFLOW* | _AIRFLOW*) unset "$var" ;;
  esac
done
# Every process started here carries this variable: `stop` finds stragglers by it.
MARKER=ELBRIDGE_DEPLOY_STATE
# Start order; `stop` goes backwards.
SERVICES=(postgres redis mosquitto customs-sim query-service consumer-1 airflow-api-server
  airflow-scheduler airflow-dag-processor airflow-triggerer airflow-celery-worker)
STOP_TIMEOUT=${ELBRIDGE_DEPLOY_STOP_TIMEOUT:-30}
WAIT_TIMEOUT=${ELBRIDGE_DEPLOY_WAIT_TIMEOUT:-180}

say() { printf '[deploy] %s\n' "$*"; }
fail() {
  printf '[deploy] error: %s\n' "$*" >&2
  exit 1
}

# -- processes ---------------------------------------------------------------------------------

pid_file() { echo "$STATE/run/$1.pid"; }

# The group's pids still running (zombies are not). Builtins only: stop calls it in a loop.
group_pids() {
  local pgid=$1 stat line fields
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    read -r -a fields <<<"${line##*) }" # after the command: state ppid pgrp ...
    [ "${fields[2]}" = "$pgid" ] && [ "${fields[0]}" != Z ] && echo "${stat//[^0-9]/}"
  done
  return 0
}

running() {
  local file
  file=$(pid_file "$1")
  [ -s "$file" ] && [ -n "$(group_pids "$(cat "$file")")" ]
}

# start NAME [ENV=VALUE...] -- COMMAND...: run COMMAND in its own session (so its own process
# group, led by its pid), output to logs/NAME.log, pid to run/NAME.pid.
start() {
  local name=$1
  shift
  local envs=()
  while [ "$1" != -- ]; do
    envs+=("$1")
    shift
  done
  shift
  if running "$name"; then
    say "$name already running (process group $(cat "$(pid_file "$name")"))"
    return 0
  fi
  env "${envs[@]}" "$MARKER=$STATE" setsid "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
  echo $! >"$(pid_file "$name")"
}

# Every live process as "pid ppid pgrp start-time" (builtins only: stop calls it in loops).
proc_table() {
  local stat line fields
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    read -r -a fields <<<"${line##*) }"
    [ "${fields[0]}" = Z ] && continue
    echo "${stat//[^0-9]/} ${fields[1]} ${fields[2]} ${fields[19]}"
  done
  return 0
}

# family PGID: "pid:start-time" of the group's processes and of all their descendants, also
# those that left the group (PostgreSQL's backends, a task runner in a session of its own).
family() {
  local pgid=$1 pid ppid pgrp start child
  local -A children=() started=() seen=()
  local -a todo=()
  while read -r pid ppid pgrp start; do
    children[$ppid]+=" $pid"
    started[$pid]=$start
    [ "$pgrp" = "$pgid" ] && todo+=("$pid")
  done < <(proc_table)
  while [ ${#todo[@]} -gt 0 ]; do
    pid=${todo[-1]}
    unset 'todo[-1]'
    [ -n "${seen[$pid]:-}" ] && continue
    seen[$pid]=1
    echo "$pid:${started[$pid]}"
    for child in ${children[$pid]:-}; do todo+=("$child"); done
  done
  return 0
}

# alive PID:START...: those still running (the same start time: a reused pid is not ours).
alive() {
  local entry line fields
  for entry in "$@"; do
    { read -r line <"/proc/${entry%%:*}/stat"; } 2>/dev/null || continue
    read -r -a fields <<<"${line##*) }"
    [ "${fields[0]}" != Z ] && [ "${fields[19]}" = "${entry#*:}" ] && echo "$entry"
  done
  return 0
}

# stop_group NAME SIGNAL: signal the group and wait until it and every descendant are gone;
# after STOP_TIMEOUT, KILL whatever is left of them.
stop_group() {
  local name=$1 sig=$2 file pgid waited=0 entry
  local -a watched
  file=$(pid_file "$name")
  [ -s "$file" ] || return 0
  pgid=$(cat "$file")
  mapfile -t watched < <(family "$pgid")
  if [ ${#watched[@]} -gt 0 ]; then
    kill "-$sig" -- "-$pgid" 2>/dev/null || true
    while [ -n "$(group_pids "$pgid")$(alive "${watched[@]}")" ]; do
      if [ "$waited" -eq $((STOP_TIMEOUT * 5)) ]; then
        say "$name did not stop within ${STOP_TIMEOUT}s: killing what is left of it"
        kill -KILL -- "-$pgid" 2>/dev/null || true
        for entry in $(alive "${watched[@]}"); do
          kill -KILL "${entry%%:*}" 2>/dev/null || true
        done
      fi
      sleep 0.2
      waited=$((waited + 1))
    done
    say "stopped $name"
  fi
  rm -f "$file"
}

# Pids of processes (not this script) whose environment carries the stack's marker: a last
# sweep for anything that left both its group and its parent. (Processes that set their title,
# as Airflow's do, overwrite that area; the groups and descendants above cover those.)
marked_pids() {
  local environ pid
  for environ in /proc/[0-9]*/environ; do
    pid=${environ#/proc/}
    pid=${pid%/environ}
    [ "$pid" = $$ ] && continue
    if grep -qxzF "$MARKER=$STATE" "$environ" 2>/dev/null; then
      [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] || echo "$pid"
    fi
  done
  return 0
}

# wait_for WHAT COMMAND...: retry COMMAND until it succeeds or WAIT_TIMEOUT passes.
wait_for() {
  local what=$1 deadline=$((SECONDS + WAIT_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] ||
      fail "$what not ready after ${WAIT_TIMEOUT}s (logs in $STATE/logs)"
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  "$VENV_BIN/python" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# -- state: ports, secrets, certificates -------------------------------------------------------

# Ports are chosen once (a free one, or DEPLOY_<NAME>_PORT) and kept in ports.env.
load_ports() {
  local file=$STATE/ports.env name var
  touch "$file"
  # shellcheck disable=SC1090
  . "$file"
  for name in POSTGRES REDIS MQTT CUSTOMS_SIM QUERY_SERVICE AIRFLOW_API; do
    var=${name}_PORT
    if [ -z "${!var:-}" ]; then
      override=DEPLOY_$var
      printf '%s=%s\n' "$var" "${!override:-$(free_port)}" >>"$file"
    fi
  done
  # shellcheck disable=SC1090
  . "$file"
}

# A random secret kept in secrets/NAME (made once).
secret() {
  local file=$STATE/secrets/$1
  [ -s "$file" ] ||
    "$VENV_BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file"
  cat "$file"
}

make_secrets() {
  mkdir -p "$STATE/secrets"
  chmod 0700 "$STATE/secrets"
  for name in postgres-password ledger-owner-password ledger-password airflow-db-password \
    redis-password airflow-admin-password airflow-jwt-secret airflow-api-secret-key \
    mqtt-bridge-password mqtt-customs-password customs-sim-admin-token; do
    secret "$name" >/dev/null
  done
  [ -s "$STATE/secrets/airflow-fernet-key" ] ||
    "$VENV_BIN/python" -c \
      'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
      >"$STATE/secrets/airflow-fernet-key"
}

# issue NAME CN KIND: a certificate for NAME signed by the local CA; KIND server (SAN localhost
# and 127.0.0.1) or client (the CN is the identity). Kept until deleted: delete tls/NAME.* and
# start again to rotate it (docs/deployment.md).
issue() {
  local name=$1 cn=$2 kind=$3 dir=$STATE/tls ext
  [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ] && return 0
  if [ "$kind" = server ]; then
    ext="subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
  else
    ext="subjectAltName=DNS:$cn
extendedKeyUsage=clientAuth"
  fi
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days "${ELBRIDGE_DEPLOY_CERT_DAYS:-90}" -sha256 \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "$ext") \
    -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
  chmod 0600 "$dir/$name.key"
  chmod 0644 "$dir/$name.pem"
}

make_certificates() {
  local dir=$STATE/tls
  mkdir -p "$dir"
  chmod 0755 "$dir" # certificates are public; every key in it is 0600
  if [ ! -s "$dir/ca.pem" ]; then
    say "making the local CA and certificates in $dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -sha256 \
      -subj "/CN=elbridge local CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      2>/dev/null
    chmod 0600 "$dir/ca.key"
    chmod 0644 "$dir/ca.pem"
  fi
  issue mosquitto mosquitto server
  issue query-service query-service server
  issue customs-sim customs-sim server
  issue bridge elbridge-bridge client
  issue customs customs-gb client
  # The issuing authority's signing key: every certificate sent to customs carries an XML
  # Signature made with it, and the customs simulator trusts its certificate.
  if [ ! -s "$dir/signing.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 -sha256 \
      -subj "/CN=elbridge local issuing authority" -keyout "$dir/signing.key" \
      -out "$dir/signing.pem" -addext "keyUsage=critical,digitalSignature" 2>/dev/null
    chmod 0600 "$dir/signing.key"
    chmod 0644 "$dir/signing.pem"
  fi
}

# -- configuration -----------------------------------------------------------------------------

pg_bin() {
  local found
  found=$(command -v "$1" 2>/dev/null ||
    ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1)
  [ -n "$found" ] ||
    fail "PostgreSQL's $1 is not installed (ELBRIDGE_WITH_POSTGRES=1 bash scripts/setup.sh)"
  echo "$found"
}

# As root the cluster belongs to the postgres user (initdb refuses root).
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

psql_admin() {
  PGPASSWORD=$(cat "$STATE/secrets/postgres-password") "$(pg_bin psql)" -h 127.0.0.1 \
    -p "$POSTGRES_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

init_postgres() {
  local dir=$STATE/postgres
  [ -s "$dir/data/PG_VERSION" ] && return 0
  say "initdb $dir/data"
  mkdir -p "$dir/data" "$dir/run"
  cp "$STATE/secrets/postgres-password" "$dir/pwfile"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres:postgres "$dir"
    as_pg_owner test -x "$STATE" || fail "the postgres user cannot reach $STATE: every folder" \
      "above it must be searchable (o+x), or set ELBRIDGE_DEPLOY_DIR elsewhere"
  fi
  as_pg_owner "$(pg_bin initdb)" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer --encoding=UTF8 --no-locale \
    >"$STATE/logs/initdb.log" 2>&1 ||
    fail "initdb failed: $(tail -5 "$STATE/logs/initdb.log")"
  rm -f "$dir/pwfile"
}

# The ledger's two roles and Airflow's database; run at every start (each step idempotent).
# elbridge_owner owns the ledger and runs its migrations; elbridge_runtime, the role every
# bridge process logs in as, gets only what `elbridge db upgrade --runtime-role` grants it
# (no UPDATE or DELETE on the chained tables).
make_databases() {
  local owner_pw runtime_pw airflow_pw
  owner_pw=$(cat "$STATE/secrets/ledger-owner-password")
  runtime_pw=$(cat "$STATE/secrets/ledger-password")
  airflow_pw=$(cat "$STATE/secrets/airflow-db-password")
  psql_admin <<SQL
SELECT 'CREATE ROLE elbridge_owner LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elbridge_owner')\gexec
ALTER ROLE elbridge_owner PASSWORD '$owner_pw';
SELECT 'CREATE ROLE elbridge_runtime LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elbridge_runtime')\gexec
ALTER ROLE elbridge_runtime PASSWORD '$runtime_pw';
SELECT 'CREATE DATABASE ledger OWNER elbridge_owner' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ledger')\gexec
SELECT 'CREATE ROLE airflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow')\gexec
ALTER ROLE airflow PASSWORD '$airflow_pw';
SELECT 'CREATE DATABASE airflow OWNER airflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow')\gexec
REVOKE ALL ON DATABASE ledger FROM PUBLIC;
GRANT CONNECT ON DATABASE ledger TO elbridge_runtime;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
SQL
}

# ledger_url ROLE SECRET: the ledger's URL as that role.
ledger_url() {
  printf 'postgresql://%s:%s@127.0.0.1:%s/ledger' "$1" "$(cat "$STATE/secrets/$2")" "$POSTGRES_PORT"
}

write_redis_conf() {
  mkdir -p "$STATE/redis"
  cat >"$STATE/redis/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
requirepass $(cat "$STATE/secrets/redis-password")
daemonize no
dir $STATE/redis
logfile $STATE/logs/redis.log
appendonly yes
appendfsync everysec
save ""
EOF
}

# The repository's locked-down broker (deploy/mosquitto): TLS only, client certificates and
# passwords required, ACLs (the bridge reads events and writes results; customs the reverse).
write_mosquitto_conf() {
  local tls=$STATE/tls
  mkdir -p "$STATE/mosquitto"
  "$VENV_BIN/python" -m bridge.adapters.mqtt.broker_setup --dir "$STATE/mosquitto" \
    --port "$MQTT_PORT" --bind-address 127.0.0.1 --run-as "$(id -un)" \
    --certfile "$tls/mosquitto.pem" --keyfile "$tls/mosquitto.key" --cafile "$tls/ca.pem" \
    --require-certificate --log-file "$STATE/logs/mosquitto-broker.log" \
    --bridge-user "elbridge=file:$STATE/secrets/mqtt-bridge-password" \
    --customs-user "customs-gb=file:$STATE/secrets/mqtt-customs-password" >/dev/null
}

# What every bridge process (CLI, services, Airflow tasks) reads: ELBRIDGE_* settings.
write_bridge_env() {
  local tls=$STATE/tls
  mkdir -p "$STATE/bridge" "$STATE/customs" "$STATE/customs-sim"
  ledger_url elbridge_runtime ledger-password >"$STATE/secrets/ledger-url"
  ledger_url elbridge_owner ledger-owner-password >"$STATE/secrets/ledger-owner-url"
  cat >"$STATE/bridge.env" <<EOF
ELBRIDGE_HOME=$STATE/bridge
ELBRIDGE_DATABASE_URL_FILE=$STATE/secrets/ledger-url
ELBRIDGE_MQTT_HOST=127.0.0.1
ELBRIDGE_MQTT_PORT=$MQTT_PORT
ELBRIDGE_MQTT_PROTOCOL=5
ELBRIDGE_MQTT_USERNAME=elbridge
ELBRIDGE_MQTT_PASSWORD_FILE=$STATE/secrets/mqtt-bridge-password
ELBRIDGE_MQTT_CA_FILE=$tls/ca.pem
ELBRIDGE_MQTT_CERT_FILE=$tls/bridge.pem
ELBRIDGE_MQTT_KEY_FILE=$tls/bridge.key
ELBRIDGE_MQTT_SHARED_GROUP=elbridge-writeoff
ELBRIDGE_SOAP_URL=https://127.0.0.1:$CUSTOMS_SIM_PORT/certex
ELBRIDGE_SOAP_CA_FILE=$tls/ca.pem
ELBRIDGE_SOAP_CERT_FILE=$tls/bridge.pem
ELBRIDGE_SOAP_KEY_FILE=$tls/bridge.key
ELBRIDGE_SIGNING_KEY_FILE=$tls/signing.key
ELBRIDGE_SIGNING_CERT_FILE=$tls/signing.pem
ELBRIDGE_SETTINGS_FILE=$STATE/elbridge.toml
EOF
  # The operator's own settings (docs/settings.md), kept across restarts; the lines above win.
  if [[ ! -e $STATE/elbridge.toml ]]; then
    cat >"$STATE/elbridge.toml" <<'EOF'
# Settings of this stack's bridge processes (names as in docs/settings.md, without ELBRIDGE_),
# read by every process at its start; the connection settings in bridge.env win over these.
# undelivered_alarm_minutes = 60
# declaration_run_minutes = 60
# reports_mode = "0640"
EOF
  fi
  # Customs' side, for `deploy-local.sh customs ...` (publishing declaration events).
  cat >"$STATE/customs.env" <<EOF
ELBRIDGE_HOME=$STATE/customs
ELBRIDGE_MQTT_HOST=127.0.0.1
ELBRIDGE_MQTT_PORT=$MQTT_PORT
ELBRIDGE_MQTT_PROTOCOL=5
ELBRIDGE_MQTT_USERNAME=customs-gb
ELBRIDGE_MQTT_PASSWORD_FILE=$STATE/secrets/mqtt-customs-password
ELBRIDGE_MQTT_CA_FILE=$tls/ca.pem
ELBRIDGE_MQTT_CERT_FILE=$tls/customs.pem
ELBRIDGE_MQTT_KEY_FILE=$tls/customs.key
EOF
  # Who may ask the query service: customs-gb, by its client certificate.
  cat >"$STATE/query-access.toml" <<EOF
[identities.customs-gb]
certificate_cn = "customs-gb"
member_states = ["DE", "GB", "LV"]
EOF
}

write_airflow_env() {
  local home=$STATE/airflow url
  mkdir -p "$home"
  url=postgresql+psycopg2://airflow:$(cat "$STATE/secrets/airflow-db-password")
  url+=@127.0.0.1:$POSTGRES_PORT/airflow
  "$VENV_BIN/python" - "$STATE" "$home" "$url" "$PROJECT" <<'PY'
import json, sys
from pathlib import Path

state, home, url, project = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4])
secret = lambda name: (state / "secrets" / name).read_text().strip()
ports = dict(
    line.split("=", 1) for line in (state / "ports.env").read_text().split() if "=" in line
)
api = f"http://127.0.0.1:{ports['AIRFLOW_API_PORT']}"
tls = state / "tls"
env = {
    "AIRFLOW_HOME": str(home),
    "AIRFLOW__CORE__DAGS_FOLDER": f"{project}/dags",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__PARALLELISM": "8",
    "AIRFLOW__CORE__FERNET_KEY": secret("airflow-fernet-key"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
    # No async PostgreSQL driver is installed; the few API routes that use one are not needed.
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": "",
    "AIRFLOW__CELERY__BROKER_URL":
        f"redis://:{secret('redis-password')}@127.0.0.1:{ports['REDIS_PORT']}/0",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + url,
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
    "AIRFLOW__API__HOST": "127.0.0.1",
    "AIRFLOW__API__PORT": ports["AIRFLOW_API_PORT"],
    "AIRFLOW__API__BASE_URL": api,
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
    # Shared by every component: the api-server checks the tokens the scheduler gives tasks.
    "AIRFLOW__API__SECRET_KEY": secret("airflow-api-secret-key"),
    "AIRFLOW__API_AUTH__JWT_SECRET": secret("airflow-jwt-secret"),
    "AIRFLOW__CORE__AUTH_MANAGER":
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    "AIRFLOW_CONN_ELBRIDGE_LEDGER": json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": int(ports["POSTGRES_PORT"]),
        "login": "elbridge_runtime", "password": secret("ledger-password"), "schema": "ledger",
    }),
    "AIRFLOW_CONN_ELBRIDGE_MQTT": json.dumps({
        "conn_type": "mqtt", "host": "127.0.0.1", "port": int(ports["MQTT_PORT"]),
        "login": "elbridge", "password": secret("mqtt-bridge-password"),
        "extra": {
            "client_id": "elbridge-writeoff-airflow", "protocol": "5",
            "ca_file": str(tls / "ca.pem"), "cert_file": str(tls / "bridge.pem"),
            "key_file": str(tls / "bridge.key"),
        },
    }),
    "AIRFLOW_CONN_ELBRIDGE_CUSTOMS_SOAP": json.dumps({
        "conn_type": "https", "host": "127.0.0.1", "port": int(ports["CUSTOMS_SIM_PORT"]),
        "schema": "certex",
        "extra": {
            "ca_file": str(tls / "ca.pem"), "cert_file": str(tls / "bridge.pem"),
            "key_file": str(tls / "bridge.key"),
        },
    }),
}
out = state / "airflow.env"
out.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
(home / "passwords.json").write_text(json.dumps({"admin": secret("airflow-admin-password")}))
PY
}

# Run "$@" with the given env files loaded (KEY=VALUE lines, taken literally).
with_env() {
  local files=() line
  while [ "$1" != -- ]; do
    files+=("$1")
    shift
  done
  shift
  local vars=()
  for file in "${files[@]}"; do
    while IFS= read -r line || [ -n "$line" ]; do
      [ -n "$line" ] && vars+=("$line")
    done <"$file"
  done
  env "${vars[@]}" "$@"
}

# The api-server answers and says the scheduler, dag-processor and triggerer are healthy.
airflow_healthy() {
  curl -fsS "http://127.0.0.1:$AIRFLOW_API_PORT/api/v2/monitor/health" | "$VENV_BIN/python" -c '
import json, sys
health = json.load(sys.stdin)
sys.exit(any(part.get("status") != "healthy" for part in health.values()))'
}

# -- start -------------------------------------------------------------------------------------

cmd_start() {
  local t0=$SECONDS name
  local setup="ELBRIDGE_WITH_POSTGRES=1 bash scripts/setup.sh"
  [ -x "$VENV_BIN/airflow" ] || ELBRIDGE_WITH_POSTGRES=1 bash "$PROJECT/scripts/setup.sh"
  command -v redis-server >/dev/null || fail "redis-server is not installed ($setup)"
  mkdir -p "$STATE/run" "$STATE/logs"
  load_ports
  make_secrets
  make_certificates
  write_bridge_env
  write_redis_conf
  write_mosquitto_conf
  write_airflow_env

  init_postgres
  local pgdir=$STATE/postgres as_owner=()
  [ "$(id -u)" = 0 ] && as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  start postgres -- "${as_owner[@]}" "$(pg_bin postgres)" -D "$pgdir/data" -p "$POSTGRES_PORT" \
    -c listen_addresses=127.0.0.1 -c "unix_socket_directories=$pgdir/run" \
    -c max_connections=150 -c shared_buffers=128MB
  start redis -- redis-server "$STATE/redis/redis.conf"
  start mosquitto -- "$(command -v mosquitto || echo /usr/sbin/mosquitto)" \
    -c "$STATE/mosquitto/mosquitto.conf"
  wait_for PostgreSQL psql_admin -c 'SELECT 1'
  make_databases
  REDISCLI_AUTH=$(cat "$STATE/secrets/redis-password") wait_for Redis \
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
  wait_for mosquitto port_open "$MQTT_PORT"

  local bridge=("$STATE/bridge.env" --) envs tls=$STATE/tls
  mapfile -t envs <"$STATE/bridge.env"
  say "ledger schema (elbridge db upgrade, as the owner; grants for the runtime role)"
  ELBRIDGE_DATABASE_OWNER_URL_FILE=$STATE/secrets/ledger-owner-url with_env "${bridge[@]}" \
    "$VENV_BIN/elbridge" db upgrade --runtime-role elbridge_runtime \
    >>"$STATE/logs/ledger-upgrade.log" 2>&1 ||
    fail "elbridge db upgrade failed: $(tail -5 "$STATE/logs/ledger-upgrade.log")"
  start customs-sim "${envs[@]}" "ELBRIDGE_HTTP_TLS_CERT=$tls/customs-sim.pem" \
    "ELBRIDGE_HTTP_TLS_KEY=$tls/customs-sim.key" "ELBRIDGE_HTTP_CLIENT_CA=$tls/ca.pem" \
    "ELBRIDGE_SIM_ADMIN_TOKEN_FILE=$STATE/secrets/customs-sim-admin-token" \
    -- "$VENV_BIN/elbridge" customs-sim serve --host 127.0.0.1 --port "$CUSTOMS_SIM_PORT" \
    --store "$STATE/customs-sim/received.db" --trusted-authority "$tls/signing.pem"
  start query-service "${envs[@]}" "ELBRIDGE_HTTP_TLS_CERT=$tls/query-service.pem" \
    "ELBRIDGE_HTTP_TLS_KEY=$tls/query-service.key" "ELBRIDGE_HTTP_CLIENT_CA=$tls/ca.pem" \
    "ELBRIDGE_QUERY_ACCESS_FILE=$STATE/query-access.toml" -- \
    "$VENV_BIN/elbridge" query-service serve --host 127.0.0.1 --port "$QUERY_SERVICE_PORT"
  # The consumers' persistent sessions exist before customs publish: the broker queues only
  # for sessions it knows. Opened only while their consumer is down (opening one takes it over).
  local consumer
  for consumer in 1:consumer-1 airflow:airflow-celery-worker; do
    running "${consumer#*:}" || ELBRIDGE_MQTT_CLIENT_ID=elbridge-writeoff-${consumer%%:*} \
      with_env "${bridge[@]}" "$VENV_BIN/elbridge" consume --open-session
  done
  start consumer-1 "${envs[@]}" ELBRIDGE_MQTT_CLIENT_ID=elbridge-writeoff-1 -- \
    "$VENV_BIN/elbridge" consume --follow
  wait_for "the customs simulator" port_open "$CUSTOMS_SIM_PORT"
  wait_for "the query service" port_open "$QUERY_SERVICE_PORT"

  say "Airflow metadata database (airflow db migrate)"
  local airflow=("$STATE/airflow.env" "$STATE/bridge.env" --)
  with_env "${airflow[@]}" "$VENV_BIN/airflow" db migrate \
    >>"$STATE/logs/airflow-db-migrate.log" 2>&1 ||
    fail "airflow db migrate failed: $(tail -20 "$STATE/logs/airflow-db-migrate.log")"
  mapfile -t envs < <(cat "$STATE/airflow.env" "$STATE/bridge.env")
  start airflow-api-server "${envs[@]}" -- "$VENV_BIN/airflow" api-server
  start airflow-scheduler "${envs[@]}" -- "$VENV_BIN/airflow" scheduler --skip-serve-logs
  start airflow-dag-processor "${envs[@]}" -- "$VENV_BIN/airflow" dag-processor
  start airflow-triggerer "${envs[@]}" -- "$VENV_BIN/airflow" triggerer --skip-serve-logs
  start airflow-celery-worker "${envs[@]}" -- "$VENV_BIN/airflow" celery worker \
    --skip-serve-logs --without-gossip --without-mingle --celery-hostname "elbridge-worker-1@%h"
  wait_for "Airflow (api-server, scheduler, dag-processor, triggerer)" airflow_healthy
  for name in "${SERVICES[@]}"; do
    running "$name" || fail "$name is not running; its log, $STATE/logs/$name.log, ends:
$(tail -15 "$STATE/logs/$name.log" 2>/dev/null)"
  done
  say "up in $((SECONDS - t0))s"
  cmd_status
}

cmd_status() {
  local name
  for name in "${SERVICES[@]}"; do
    if running "$name"; then
      printf '  %-24s running (process group %s)\n' "$name" "$(cat "$(pid_file "$name")")"
    else
      printf '  %-24s stopped\n' "$name"
    fi
  done
  if [ -s "$STATE/ports.env" ]; then
    . "$STATE/ports.env"
    echo "  Airflow UI       http://127.0.0.1:$AIRFLOW_API_PORT"
    echo "                   (admin; password in $STATE/secrets/airflow-admin-password)"
    echo "  console          http://127.0.0.1:$AIRFLOW_API_PORT/elbridge-console/ (its users: deploy-local.sh elbridge console user add)"
    echo "  ledger           postgresql://elbridge_runtime@127.0.0.1:$POSTGRES_PORT/ledger"
    echo "  MQTT             127.0.0.1:$MQTT_PORT (TLS; users elbridge, customs-gb)"
    echo "  query service    https://127.0.0.1:$QUERY_SERVICE_PORT/certex-query (tls/customs.pem)"
    echo "  customs (sim)    https://127.0.0.1:$CUSTOMS_SIM_PORT/certex (tls/bridge.pem)"
  fi
}

cmd_stop() {
  local i name sig left
  [ -d "$STATE/run" ] || {
    say "nothing runs from $STATE"
    return 0
  }
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]}
    sig=TERM
    [ "$name" = postgres ] && sig=INT # fast shutdown: roll back open transactions, checkpoint
    stop_group "$name" "$sig"
  done
  left=$(marked_pids)
  if [ -n "$left" ]; then
    say "killing processes left outside their groups: $(echo $left)"
    kill -KILL $left 2>/dev/null || true
  fi
  say "stopped"
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
airflow)
  shift
  with_env "$STATE/airflow.env" "$STATE/bridge.env" -- "$VENV_BIN/airflow" "$@"
  ;;
elbridge)
  shift
  with_env "$STATE/bridge.env" -- "$VENV_BIN/elbridge" "$@"
  ;;
customs)
  shift
  with_env "$STATE/customs.env" -- "$VENV_BIN/elbridge" "$@"
  ;;
*) fail "usage: $0 [start|stop|status|airflow ARGS|elbridge ARGS|customs ARGS]" ;;
esac
