#!/usr/bin/env bash
# A local boxoffice cluster in distributed mode, on this machine's services.
#
#   scripts/cluster.sh up [N]   start N nodes (default 3) on 127.0.0.1:8081, 8082, ...
#   scripts/cluster.sh status   each node's /readyz
#   scripts/cluster.sh down     stop the nodes; drop their database, Redis keys and stream
#
# The nodes share a fresh PostgreSQL database (boxoffice_cluster_<random>, made with
# psql), a fresh key prefix on the Redis at 127.0.0.1:6379 and a fresh JetStream stream
# on the NATS at 127.0.0.1:4222. Each has its own data dir (search index, mail, simulated
# gateway ledger) and log under the state dir; node 1 writes the audit history. All run
# with --demo (seeded once, by whichever node claims it first). `up` returns once every
# node is ready and prints their URLs.
#
# Environment: BOXOFFICE_BIN (the binary; default the release build, built when missing),
# CLUSTER_BASE_PORT (8081), CLUSTER_STATE_DIR (${XDG_STATE_HOME:-$HOME/.local/state}/boxoffice/cluster),
# CLUSTER_POSTGRES (postgres://postgres@127.0.0.1:5432, no database name),
# CLUSTER_REDIS (127.0.0.1:6379), CLUSTER_NATS (nats://127.0.0.1:4222),
# CLUSTER_READY_TIMEOUT (seconds, 300).
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${CLUSTER_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/boxoffice/cluster}"
STATE_FILE="$STATE_DIR/cluster.env"
POSTGRES="${CLUSTER_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
REDIS="${CLUSTER_REDIS:-127.0.0.1:6379}"
REDIS_HOST="${REDIS%:*}"
REDIS_PORT="${REDIS##*:}"
NATS="${CLUSTER_NATS:-nats://127.0.0.1:4222}"
READY_TIMEOUT="${CLUSTER_READY_TIMEOUT:-300}"

die() { echo "cluster: $*" >&2; exit 1; }

binary() {
  if [ -n "${BOXOFFICE_BIN:-}" ]; then
    [ -x "$BOXOFFICE_BIN" ] || die "BOXOFFICE_BIN=$BOXOFFICE_BIN is not an executable"
    echo "$BOXOFFICE_BIN"
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice/target}"
  local bin="$CARGO_TARGET_DIR/release/boxoffice"
  if [ ! -x "$bin" ]; then
    echo "building the release binary (cargo build --release -p boxoffice-server)" >&2
    cargo build --release -p boxoffice-server >&2
  fi
  echo "$bin"
}

# Deletes a JetStream stream: one request over the NATS text protocol.
delete_stream() {
  python3 - "$NATS" "$1" <<'PY'
import json, socket, sys
from urllib.parse import urlparse
url, stream = urlparse(sys.argv[1]), sys.argv[2]
s = socket.create_connection((url.hostname or "127.0.0.1", url.port or 4222), timeout=5)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.cluster 1\r\n'
          + f"PUB $JS.API.STREAM.DELETE.{stream} _INBOX.cluster 0\r\n\r\nPING\r\n".encode())
while True:
    line = f.readline()
    if not line:
        sys.exit("nats closed the connection")
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"MSG"):
        reply = json.loads(f.read(int(line.split()[-1]) + 2))
        err = reply.get("error")
        if err and err.get("err_code") != 10059:  # 10059: no such stream
            sys.exit(f"stream {stream}: {err.get('description')}")
        break
PY
}

ready_json() { curl -s -m 3 "http://127.0.0.1:$1/readyz" || true; }
ready_code() { curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz" || true; }

up() {
  local nodes="${1:-3}"
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number, not '$nodes'"
  [ -f "$STATE_FILE" ] && die "a cluster is up already ($STATE_FILE); 'scripts/cluster.sh down' first"
  local base="${CLUSTER_BASE_PORT:-8081}"
  for i in $(seq 1 "$nodes"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$((base + i - 1))") 2>/dev/null; then
      die "port $((base + i - 1)) is taken; set CLUSTER_BASE_PORT"
    fi
  done
  command -v psql >/dev/null || die "psql is needed to create the database"
  command -v redis-cli >/dev/null || die "redis-cli is needed (down deletes the cluster's keys with it)"
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null || die "no Redis at $REDIS"
  local bin
  bin="$(binary)"

  local id
  id="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  local database="boxoffice_cluster_$id"
  local prefix="boxoffice-cluster-$id:"
  local stream="BOXOFFICE_CLUSTER_$id"
  psql "$POSTGRES/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $database" \
    || die "cannot create database $database at $POSTGRES"
  mkdir -p "$STATE_DIR"
  cat >"$STATE_FILE" <<EOF
NODES=$nodes
BASE_PORT=$base
DATABASE=$database
PREFIX=$prefix
STREAM=$stream
EOF
  # The schema once, before the nodes start (each would also bring it up to date).
  "$bin" migrate --database-url "$POSTGRES/$database"

  for i in $(seq 1 "$nodes"); do
    local port=$((base + i - 1)) dir="$STATE_DIR/node-$i"
    mkdir -p "$dir"
    local writer=false
    [ "$i" = 1 ] && writer=true
    nohup "$bin" serve \
      --addr "127.0.0.1:$port" \
      --data-dir "$dir/data" \
      --database-url "$POSTGRES/$database" \
      --redis-url "redis://$REDIS" \
      --redis-key-prefix "$prefix" \
      --nats-url "$NATS" \
      --nats-stream "$stream" \
      --nats-subjects "boxoffice.cluster_$id.>" \
      --audit-writer "$writer" \
      --demo \
      >"$dir/log" 2>&1 &
    echo $! >"$dir/pid"
  done

  local deadline=$((SECONDS + READY_TIMEOUT))
  for i in $(seq 1 "$nodes"); do
    local port=$((base + i - 1)) dir="$STATE_DIR/node-$i"
    until [ "$(ready_code "$port")" = 200 ]; do
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        tail -n 20 "$dir/log" >&2
        die "node $i exited (log: $dir/log); 'scripts/cluster.sh down' cleans up"
      fi
      [ "$SECONDS" -lt "$deadline" ] \
        || die "node $i not ready after ${READY_TIMEOUT}s: $(ready_json "$port") (log: $dir/log)"
      sleep 0.5
    done
  done
  echo "cluster up: $nodes nodes, database $database, Redis $REDIS prefix $prefix, NATS $NATS stream $stream"
  for i in $(seq 1 "$nodes"); do
    local role="node"
    [ "$i" = 1 ] && role="node, audit writer"
    echo "  node $i: http://127.0.0.1:$((base + i - 1))/  ($role; log $STATE_DIR/node-$i/log)"
  done
}

load_state() {
  [ -f "$STATE_FILE" ] || die "no cluster is up (no $STATE_FILE)"
  # shellcheck disable=SC1090
  . "$STATE_FILE"
}

status() {
  load_state
  echo "database $DATABASE, Redis prefix $PREFIX, stream $STREAM"
  for i in $(seq 1 "$NODES"); do
    local port=$((BASE_PORT + i - 1)) pid
    pid="$(cat "$STATE_DIR/node-$i/pid" 2>/dev/null || echo '?')"
    local alive="running"
    kill -0 "$pid" 2>/dev/null || alive="not running"
    echo "node $i http://127.0.0.1:$port/ (pid $pid, $alive): $(ready_code "$port") $(ready_json "$port")"
  done
}

down() {
  load_state
  local pids=()
  for i in $(seq 1 "$NODES"); do
    local pid
    pid="$(cat "$STATE_DIR/node-$i/pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node pid $pid did not stop in 20 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  echo "stopped ${#pids[@]} nodes"
  psql "$POSTGRES/postgres" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" \
    && echo "dropped database $DATABASE"
  local keys
  keys="$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$PREFIX*" | wc -l)"
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "$PREFIX*" \
    | xargs -r -d '\n' -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" DEL >/dev/null
  echo "deleted $keys Redis keys with prefix $PREFIX"
  delete_stream "$STREAM" && echo "deleted stream $STREAM"
  for i in $(seq 1 "$NODES"); do rm -rf "$STATE_DIR/node-$i"; done
  rm -f "$STATE_FILE"
}

case "${1:-}" in
  up) up "${2:-3}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/cluster.sh up [N] | status | down" >&2; exit 2 ;;
esac
