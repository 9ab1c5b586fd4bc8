#!/usr/bin/env bash
# HTTP hold benchmark with its Redis anchor, in one run (see docs/benchmarks.md).
#
#   scripts/bench-holds.sh [RUNS]
#
# Per run: a private redis-server pinned to core 0 measured by redis-benchmark on core 1
# (SET seat:<rand> x NX EX 600), then boxoffice (release build, --demo, fresh data dir)
# pinned to core 0 measured by wrk on core 1: single-seat holds on random seats of the
# 60,000-seat stadium event, each followed by its release, 64 connections. Prints every
# figure, the medians and the ratio boxoffice/redis; then the server's RSS with the whole
# stadium held. Installs wrk (apt) if missing. BENCH_BIN=path uses that binary instead of
# building; BENCH_DURATION (s) and BENCH_JOURNAL_SYNC (fsync|write) tune the run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
DURATION="${BENCH_DURATION:-10}"
SYNC="${BENCH_JOURNAL_SYNC:-fsync}"
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/boxoffice}"

ensure_tool wrk wrk
ensure_tool redis-benchmark redis-tools
command -v redis-server >/dev/null || { echo "redis-server is needed for the anchor" >&2; exit 1; }
[ -n "${BENCH_BIN:-}" ] || cargo build --release -p boxoffice-server >&2

load=$(load1)
echo "date: $(date -u +%FT%TZ)  commit: $(git rev-parse --short HEAD)  nproc: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  load: $load  journal: $SYNC"
if awk "BEGIN{exit !($load > 0.5)}"; then echo "WARNING: load average $load > 0.5 before the run; figures will be noisy" >&2; fi

WORK=$(mktemp -d)
SERVER_PID=""; REDIS_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true; [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

redis_figures=(); ours_figures=(); ours_p99=()
for run in $(seq 1 "$RUNS"); do
  rport=$(free_port)
  taskset -c 0 redis-server --port "$rport" --save "" --appendonly no --daemonize no >/dev/null &
  REDIS_PID=$!
  sleep 0.5
  rps=$(taskset -c 1 redis-benchmark -p "$rport" -n 1000000 -c 50 -r 60000 -q SET 'seat:__rand_int__' x NX EX 600 \
        | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
  kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""
  redis_figures+=("$rps")
  echo "run $run: redis SET NX EX: $rps ops/s"

  port=$(free_port)
  rm -rf "$WORK/data"
  # Capacity, not policy: the per-user rate limit (10 holds/s) is off for this run.
  taskset -c 0 "$BIN" serve --demo --addr "127.0.0.1:$port" --data-dir "$WORK/data" --journal-sync "$SYNC" \
    --rate-limit-per-user 0 --log warn >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$port"
  mint_tokens "$port" 1000 bench >"$WORK/tokens"
  out=$(BO_TOKENS="$WORK/tokens" BO_EVENT=ev_1 taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency \
        -s scripts/wrk-holds.lua "http://127.0.0.1:$port")
  echo "$out" | sed 's/^/    /'
  req=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  ours_figures+=("$req"); ours_p99+=("$p99")
  echo "run $run: boxoffice hold/release requests: $req req/s, p99 $p99 (closed loop, at saturation)"
  if [ "$run" = "$RUNS" ]; then
    python3 - "$port" <<'PY'
import http.client, json, sys
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port)
def token(u):
    c.request("POST", "/v1/auth/token", json.dumps({"user": u, "role": "fan"}), {"Content-Type": "application/json"})
    return json.loads(c.getresponse().read())["token"]
held = 0
def hold(user, count):
    c.request("POST", "/v1/events/ev_1/holds", json.dumps({"best_available": {"count": count}}),
              {"Content-Type": "application/json", "Authorization": "Bearer " + token(user)})
    r = c.getresponse(); body = json.loads(r.read())
    return len(body["seats"]) if r.status == 201 else 0
u = 0
while True:
    u += 1
    got = hold(f"filler{u}", 8)
    if not got: break
    held += got
while True:
    u += 1
    got = hold(f"filler{u}", 1)
    if not got: break
    held += got
c.request("GET", "/v1/events/ev_1/availability", headers={"Accept": "application/json"})
print(f"filled the stadium: {held} seats held by this script; available now:", json.loads(c.getresponse().read())["available_count"])
PY
    echo "server RSS with the stadium fully held: $(awk '/VmRSS/ {print $2, $3}' /proc/$SERVER_PID/status)"
  fi
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
done

r=$(median "${redis_figures[@]}"); o=$(median "${ours_figures[@]}")
echo "median redis SET NX: $r ops/s; median boxoffice: $o req/s (holds+releases); p99s: ${ours_p99[*]}"
echo "ratio boxoffice/redis: $(ratio "$o" "$r")"
