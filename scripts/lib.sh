# Shell functions the benchmark scripts share (sourced, not run):
# scripts/bench.sh, scripts/bench-holds.sh, scripts/bench-distributed.sh.
#
# Conventions: WORK is the run's scratch directory; SUT and GEN are command prefixes
# (arrays) that pin the system under test and the load generator (`bench_pinning`);
# MAX_LOAD and LOAD_WAIT bound `quiet`; the private Redis is REDIS_PID on RPORT.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/boxoffice/target}"

# Installs the apt package PKG when COMMAND is missing (idempotent).
ensure_tool() {  # command package
  command -v "$1" >/dev/null && return
  echo "installing $2 (for $1)" >&2
  apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; } \
    || { echo "cannot install $2; $1 is needed" >&2; exit 1; }
  command -v "$1" >/dev/null || { echo "$2 did not provide $1" >&2; exit 1; }
}

# SUT=(taskset -c $1) and GEN=(taskset -c $2); an empty core means no pinning.
# (taskset execs the command: $! of a background job is its pid.)
bench_pinning() {  # sut_cpu gen_cpu
  SUT=(); GEN=()
  [ -n "$1" ] && SUT=(taskset -c "$1")
  [ -n "$2" ] && GEN=(taskset -c "$2")
  return 0
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# N consecutive free ports (a cluster's nodes) -> BASE, the first.
pick_base() {  # n
  BASE=$(python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(1000):
    base = random.randint(20000, 29000)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
}
# Commands the Redis on this port has processed since it started.
redis_commands() { redis-cli -p "$1" INFO stats | awk -F: '/^total_commands_processed:/ {print $2+0}'; }
# Script calls (EVAL, EVALSHA, FCALL and their _ro forms: each one round trip) the Redis
# on this port has served, from INFO commandstats.
redis_script_calls() {
  redis-cli -p "$1" INFO commandstats | awk -F'[:=,]' '/^cmdstat_(evalsha|eval|fcall)(_ro)?:/ { n += $3 } END { print n + 0 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# One line on the machine and the code: date, commit (+dirty), nproc, CPU model, load.
machine_line() {
  echo "date: $(date -u +%FT%TZ)  commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates 2>/dev/null || echo '+dirty')  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  load: $(uptime | sed 's/.*load average: //')"
}

# Waits until the 1-minute load average is below MAX_LOAD, at most LOAD_WAIT seconds
# (polling every 30 s, or sooner when less is left); prints it, with "!" when the wait
# ran out.
quiet() {
  local started=$SECONDS load left
  while :; do
    load=$(load1)
    if awk "BEGIN{exit !($load < $MAX_LOAD)}"; then echo "$load"; return; fi
    left=$((LOAD_WAIT - (SECONDS - started)))
    if [ "$left" -le 0 ]; then
      [ "$LOAD_WAIT" -gt 0 ] && echo "WARNING: load average still $load after ${LOAD_WAIT}s; measuring anyway" >&2
      echo "$load!"; return
    fi
    echo "  (load average $load >= $MAX_LOAD; waiting)" >&2
    sleep $((left < 30 ? left : 30))
  done
}

# utime + stime (clock ticks) of the given pids, summed.
ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# A private redis-server (no persistence) on a free port, pinned with SUT: REDIS_PID, RPORT.
start_redis() {
  local attempt
  for attempt in 1 2 3; do
    RPORT=$(free_port)
    "${SUT[@]}" redis-server --port "$RPORT" --save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 100); do
      [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && return
      kill -0 "$REDIS_PID" 2>/dev/null || break
      sleep 0.1
    done
    echo "redis-server on port $RPORT did not start (attempt $attempt):" >&2; tail -n 3 "$WORK/redis.log" >&2
    stop_redis
  done
  exit 1
}
stop_redis() { if [ -n "${REDIS_PID:-}" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""; fi; }

# redis-benchmark's final "N requests per second" of one command, run with GEN.
redis_rps() {  # port requests clients command...
  local port=$1 n=$2 c=$3; shift 3
  timeout $((n / 5000 + 60)) "${GEN[@]}" redis-benchmark -p "$port" -n "$n" -c "$c" -r 60000 -q "$@" \
    | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1
}

# The 2-seat all-or-nothing hold: both keys absent, then both SET with EX.
# shellcheck disable=SC2034
ANCHOR_LUA="if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 1"

# A fresh database NAME on PG with a 60,000-row seats table (event 1, no holder).
pg_seats_db() {  # pg-url name
  PGOPTIONS="-c client_min_messages=warning" psql "$1/postgres" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null
  psql "$1/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $2" >/dev/null
  psql "$1/$2" -qAt -v ON_ERROR_STOP=1 -c "CREATE TABLE seats (event_id int NOT NULL, seat int NOT NULL, holder int, PRIMARY KEY (event_id, seat));
    INSERT INTO seats SELECT 1, s, NULL FROM generate_series(1, 60000) s;" >/dev/null
  psql "$1/$2" -qAt -v ON_ERROR_STOP=1 -c "VACUUM ANALYZE seats" >/dev/null
}
pg_drop_db() { psql "$1/postgres" -qAt -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null 2>&1 || true; }

# pgbench scripts. The conditional-UPDATE hold of a random seat and its release (two
# statements, each its own commit):
pg_hold_sql() {
  cat <<'EOF'
\set seat random(1, 60000)
\set user random(1, 1000000)
UPDATE seats SET holder = :user WHERE event_id = 1 AND seat = :seat AND holder IS NULL;
UPDATE seats SET holder = NULL WHERE event_id = 1 AND seat = :seat AND holder = :user;
EOF
}
# The SELECT ... FOR UPDATE hold (lock the row, take it if free, commit) of a
# Zipf-distributed seat (exponent 1.1, seat 1 the most wanted), then its release.
pg_for_update_sql() {
  cat <<'EOF'
\set seat random_zipfian(1, 60000, 1.1)
\set user random(1, 1000000)
BEGIN;
SELECT holder FROM seats WHERE event_id = 1 AND seat = :seat FOR UPDATE;
UPDATE seats SET holder = :user WHERE event_id = 1 AND seat = :seat AND holder IS NULL;
COMMIT;
UPDATE seats SET holder = NULL WHERE event_id = 1 AND seat = :seat AND holder = :user;
EOF
}

# pgbench's transactions per second (run with GEN).
pgbench_tps() {  # pg-url db seconds script-file
  timeout $(($3 + 60)) "${GEN[@]}" pgbench -n -M prepared -c 50 -j 2 -T "$3" -f "$4" "$1/$2" 2>/dev/null \
    | awk '/^tps/ {print $3; exit}'
}

# Waits (at most 30 s) until the server at PORT answers /readyz.
wait_ready() {  # port
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "the server on port $1 is not ready after 30 s" >&2
  return 1
}

mint_tokens() {  # port count prefix -> one token per line
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("POST", "/v1/auth/token", json.dumps({"user": f"{sys.argv[3]}{i}", "role": "fan"}), {"Content-Type": "application/json"})
    print(json.loads(c.getresponse().read())["token"])
PY
}
