#!/usr/bin/env bash
# Distributed-mode benchmarks with their anchors, in one run (see docs/benchmarks.md,
# "Distributed mode").
#
#   scripts/bench-distributed.sh [RUNS]
#
# Per run:
#   a. Redis anchor: a private redis-server (no persistence) pinned to the system-under-test
#      core, measured by redis-benchmark on the load-generator core: EVALSHA of a 2-seat
#      all-or-nothing hold script (both seat keys absent, then SET both EX 600).
#   b. PostgreSQL anchor: pgbench (load-generator core) on the machine's PostgreSQL
#      (unpinned), fresh database, a 60,000-row seats table, a conditional-UPDATE hold and
#      its release per transaction, 50 clients.
#   c. For each node count (BENCH_NODES, default "1 3"): `scripts/cluster.sh up N` on a
#      fresh private redis-server (pinned like the anchor's), the machine's PostgreSQL and
#      NATS, nodes pinned to the system-under-test core, payment latency 0, per-user rate
#      limit off. Then
#        - capacity: wrk (closed loop, 64 connections, one thread per node, each thread's
#          connections on one node) with scripts/wrk-holds.lua: single-seat holds on random
#          stadium seats, each followed by its release; CPU time per request of each
#          component from /proc/<pid>/stat;
#        - latency: open loop at half that capacity, one `boxoffice loadtest --rate` per
#          node in parallel (each its share of the rate and of the 64 connections);
#        - durable confirms: one `boxoffice loadtest --mix hold-checkout` per node in
#          parallel (closed loop, 64 connections in all), checkouts answered 201 per second
#          added up.
#   Finally (once): Redis memory of the stadium event ev_1 with all 60,000 seats held.
#
# Before every measurement the script waits (polling every 30 s, at most BENCH_LOAD_WAIT
# seconds) until the 1-minute load average is below BENCH_MAX_LOAD, and prints it next to
# the figure (a "!" marks a figure taken after the wait ran out).
#
# Environment: BENCH_BIN (binary; default the release build, built if missing),
# BENCH_DURATION (s, 10), BENCH_NODES ("1 3"), BENCH_MAX_LOAD (1.5), BENCH_LOAD_WAIT (1200),
# BENCH_SUT_CPU (0) and BENCH_GEN_CPU (1): taskset cores ("" for no pinning),
# BENCH_REDIS_REQUESTS (500000), BENCH_POSTGRES (postgres://postgres@127.0.0.1:5432),
# BENCH_MEMORY (1: measure memory; 0: skip), BENCH_THROUGHPUT (1; 0: memory only).
# Installs wrk (apt) if missing; needs redis-server, redis-benchmark, redis-cli, pgbench,
# psql and the NATS that scripts/cluster.sh uses.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
RUNS="${1:-3}"
DURATION="${BENCH_DURATION:-10}"
NODES_LIST="${BENCH_NODES:-1 3}"
MAX_LOAD="${BENCH_MAX_LOAD:-1.5}"
LOAD_WAIT="${BENCH_LOAD_WAIT:-1200}"
SUT_CPU="${BENCH_SUT_CPU-0}"
GEN_CPU="${BENCH_GEN_CPU-1}"
REDIS_REQUESTS="${BENCH_REDIS_REQUESTS:-500000}"
PG="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
CONNS=64
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/boxoffice}"

ensure_tool wrk wrk
for tool in redis-server redis-benchmark redis-cli pgbench psql python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
[ -x "$BIN" ] || cargo build --release -p boxoffice-server >&2

bench_pinning "$SUT_CPU" "$GEN_CPU"
HZ=$(getconf CLK_TCK)

load=$(load1)
machine_line
echo "pinning: system under test (redis-server, nodes) on core '${SUT_CPU:-none}', load generators on core '${GEN_CPU:-none}'; PostgreSQL and NATS are the machine's (unpinned)"
echo "redis: $(redis-server --version | awk '{print $3}' | cut -d= -f2), postgres: $(psql "$PG/postgres" -qAtc 'show server_version'), synchronous_commit=$(psql "$PG/postgres" -qAtc 'show synchronous_commit'), fsync=$(psql "$PG/postgres" -qAtc 'show fsync')"
if awk "BEGIN{exit !($load > 0.5)}"; then echo "WARNING: load average $load > 0.5 before the run; figures will be noisy" >&2; fi

WORK=$(mktemp -d)
# A private copy of the binary: a rebuild of the shared target dir during the run must not
# change what is measured.
cp "$BIN" "$WORK/boxoffice"; BIN="$WORK/boxoffice"; export BOXOFFICE_BIN="$BIN"
echo "binary: $(sha256sum "$BIN" | cut -c1-12) (copy of ${BENCH_BIN:-$CARGO_TARGET_DIR/release/boxoffice}, built $(date -u -r "${BENCH_BIN:-$CARGO_TARGET_DIR/release/boxoffice}" +%FT%TZ))"
REDIS_PID=""; CLUSTER_UP=""; PGDB=""
stop_redis() { if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; REDIS_PID=""; fi; }
cluster() {
  CLUSTER_STATE_DIR="$WORK/cluster" CLUSTER_REDIS="127.0.0.1:$RPORT" CLUSTER_BASE_PORT="$BASE" \
  CLUSTER_POSTGRES="$PG" BOXOFFICE_PAYMENT_LATENCY_MS=0 BOXOFFICE_RATE_LIMIT_PER_USER=0 BOXOFFICE_LOG=warn \
    "${SUT[@]}" scripts/cluster.sh "$@"
}
cleanup() {
  if [ -n "$CLUSTER_UP" ]; then cluster down >/dev/null 2>&1 || true; fi
  stop_redis
  [ -n "$PGDB" ] && psql "$PG/postgres" -qAt -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT


# wrk script: scripts/wrk-holds.lua, with each wrk thread's connections on one node
# (thread i on node i mod N; BO_PORTS lists the nodes' ports).
cat >"$WORK/wrk-nodes.lua" <<EOF
local threads = 0
function setup(thread)
  local ports = {}
  for p in string.gmatch(os.getenv("BO_PORTS"), "%d+") do ports[#ports + 1] = p end
  threads = threads + 1
  thread.addr = wrk.lookup("127.0.0.1", ports[((threads - 1) % #ports) + 1])[1]
end
dofile("$ROOT/scripts/wrk-holds.lua")
EOF

# pgbench: a conditional-UPDATE hold of a random seat and its release (two statements,
# each its own transaction commit).
pg_hold_sql >"$WORK/pg-hold.sql"

declare -A HOLD_RPS HOLD_P50 HOLD_P99 LAT_P50 LAT_P99 CONFIRMS
redis_figs=(); pg_figs=()
if [ "${BENCH_THROUGHPUT:-1}" = 1 ]; then
for run in $(seq 1 "$RUNS"); do
  echo "== run $run"
  # a. Redis anchor.
  start_redis
  sha=$(redis-cli -p "$RPORT" SCRIPT LOAD "$ANCHOR_LUA")
  l=$(quiet)
  rps=$("${GEN[@]}" redis-benchmark -p "$RPORT" -n "$REDIS_REQUESTS" -c "$CONNS" -r 60000 -q \
          EVALSHA "$sha" 2 '{ev1}:seat:__rand_int__' '{ev1}:seat:__rand_int__' u 600 \
        | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
  echo "run $run: [load $l] redis EVALSHA 2-seat hold: $rps scripts/s ($(redis-cli -p "$RPORT" dbsize) seat keys held at the end)"
  redis_figs+=("$rps")
  stop_redis

  # b. PostgreSQL anchor.
  PGDB="bench_pghold_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  pg_seats_db "$PG" "$PGDB"
  l=$(quiet)
  tps=$("${GEN[@]}" pgbench -n -M prepared -c 50 -j 2 -T "$DURATION" -f "$WORK/pg-hold.sql" "$PG/$PGDB" 2>/dev/null \
        | awk '/^tps/ {print $3; exit}')
  echo "run $run: [load $l] pgbench conditional-UPDATE hold + release: $tps transactions/s = $tps holds/s ($(awk "BEGIN{print 2*$tps}") commits/s)"
  pg_figs+=("$tps")
  psql "$PG/postgres" -qAt -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null; PGDB=""

  for n in $NODES_LIST; do
    # c. boxoffice, N nodes.
    start_redis
    pick_base "$n"
    CLUSTER_UP=1
    cluster up "$n" >"$WORK/cluster-up.log" 2>&1 || { cat "$WORK/cluster-up.log" >&2; exit 1; }
    ports=$(seq -s, "$BASE" $((BASE + n - 1)))
    mint_tokens "$BASE" 1000 "bench$run-$n-" >"$WORK/tokens"
    node_pids=$(cat "$WORK"/cluster/node-*/pid | xargs)
    pg_pids=$(pgrep -x postgres | xargs); nats_pids=$(pgrep -x nats-server | xargs || true)

    # What the nodes' background loops (expiry sweep, rebuild check, audit drain over every
    # loaded event) cost with no requests at all.
    i0=("$(ticks $node_pids)" "$(ticks $REDIS_PID)"); sleep 5; i1=("$(ticks $node_pids)" "$(ticks $REDIS_PID)")
    echo "run $run: $n node(s) idle (no requests): nodes $(awk "BEGIN{printf \"%.0f\", ($((i1[0]-i0[0])))*100/$HZ/5}")%, redis $(awk "BEGIN{printf \"%.0f\", ($((i1[1]-i0[1])))*100/$HZ/5}")% of a core"
    l=$(quiet)
    t0=("$(ticks $node_pids)" "$(ticks $REDIS_PID)" "$(ticks $pg_pids)" "$(ticks $nats_pids)")
    out=$(BO_PORTS="$ports" BO_TOKENS="$WORK/tokens" BO_EVENT=ev_1 "${GEN[@]}" wrk -t"$n" -c"$CONNS" -d"${DURATION}s" --latency \
          -s "$WORK/wrk-nodes.lua" "http://127.0.0.1:$BASE")
    t1=("$(ticks $node_pids)" "$(ticks $REDIS_PID)" "$(ticks $pg_pids)" "$(ticks $nats_pids)")
    req=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    total=$(echo "$out" | awk '/requests in/ {print $1}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}'); p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    HOLD_RPS[$n]+="$req "; HOLD_P50[$n]+="$p50 "; HOLD_P99[$n]+="$p99 "
    # CPU per request: gross (everything the process did during the run) and net of the
    # idle background rate measured just before.
    cpu=$(awk -v hz="$HZ" -v n="$total" -v s="$DURATION" -v a="$((t1[0]-t0[0]))" -v b="$((t1[1]-t0[1]))" -v c="$((t1[2]-t0[2]))" -v d="$((t1[3]-t0[3]))" \
          -v ia="$((i1[0]-i0[0]))" -v ib="$((i1[1]-i0[1]))" \
          'BEGIN{f=1e6/hz/n; printf "CPU per request: nodes %.1f us (net of idle %.1f), redis %.1f us (net %.1f), postgres %.1f us, nats %.1f us", a*f, (a-ia*s/5)*f, b*f, (b-ib*s/5)*f, c*f, d*f}')
    echo "run $run: [load $l] $n node(s): hold/release $req req/s (~$(awk "BEGIN{printf \"%.0f\", $req/2}") holds/s; ${non2xx:-0} non-2xx), p50 $p50 p99 $p99 (closed loop, at saturation); $cpu"

    # Latency: open loop at half the capacity, one loadtest per node.
    rate=$(awk -v r="$req" -v n="$n" 'BEGIN{printf "%.0f", r/2/n}')
    l=$(quiet)
    pids=()
    for i in $(seq 1 "$n"); do
      "${GEN[@]}" "$BIN" loadtest --target "http://127.0.0.1:$((BASE + i - 1))" --scenario holds --rate "$rate" \
        --connections $((CONNS / n)) --duration "$DURATION" --no-audit --quiet --json "$WORK/lat-$i.json" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    lat=$(python3 - "$WORK" "$n" <<'PY'
import json, sys
w, n = sys.argv[1], int(sys.argv[2])
p50, p99, rate = [], [], 0.0
for i in range(1, n + 1):
    d = json.load(open(f"{w}/lat-{i}.json"))
    rate += d["throughput"]
    h = next(o for o in d["operations"] if o["name"] == "hold")
    p50.append(h["latency_us"]["p50"] / 1000); p99.append(h["latency_us"]["p99"] / 1000)
print(f"{max(p50):.2f} {max(p99):.2f} {rate:.0f} " + "/".join(f"{x:.2f}" for x in p99))
PY
)
    read -r lp50 lp99 lrate lall <<<"$lat"
    LAT_P50[$n]+="$lp50 "; LAT_P99[$n]+="$lp99 "
    echo "run $run: [load $l] $n node(s): open loop at $lrate req/s ($rate per node): hold p50 ${lp50} ms, p99 ${lp99} ms (worst node; per node p99 $lall ms)"

    # Durable confirms: hold then checkout, one loadtest per node.
    l=$(quiet)
    pids=()
    for i in $(seq 1 "$n"); do
      "${GEN[@]}" "$BIN" loadtest --target "http://127.0.0.1:$((BASE + i - 1))" --scenario holds --mix hold-checkout \
        --connections $((CONNS / n)) --duration "$DURATION" --quiet --json "$WORK/co-$i.json" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    co=$(python3 - "$WORK" "$n" <<'PY'
import json, sys
w, n = sys.argv[1], int(sys.argv[2])
rate, p50, p99, audit = 0.0, [], [], []
for i in range(1, n + 1):
    d = json.load(open(f"{w}/co-{i}.json"))
    c = next(o for o in d["operations"] if o["name"] == "checkout")
    rate += c["statuses"].get("201", 0) / d["elapsed_s"]
    p50.append(c["latency_us"]["p50"] / 1000); p99.append(c["latency_us"]["p99"] / 1000)
    audit.append("passed" if (d.get("audit") or {}).get("passed") else "FAILED")
print(f"{rate:.0f} {max(p50):.0f} {max(p99):.0f} {'/'.join(audit)}")
PY
)
    read -r crate cp50 cp99 caudit <<<"$co"
    CONFIRMS[$n]+="$crate "
    echo "run $run: [load $l] $n node(s): durable confirms (hold + checkout, payment latency 0): $crate checkouts 201/s; checkout p50 $cp50 ms p99 $cp99 ms; oversell audit $caudit"

    cluster down >/dev/null; CLUSTER_UP=""
    stop_redis
  done
done

echo "== medians of $RUNS runs"
r=$(median "${redis_figs[@]}"); p=$(median "${pg_figs[@]}")
echo "redis EVALSHA 2-seat hold: $r scripts/s; pgbench hold: $p holds/s"
for n in $NODES_LIST; do
  # shellcheck disable=SC2086
  h=$(median ${HOLD_RPS[$n]}); c=$(median ${CONFIRMS[$n]}); lp=$(median ${LAT_P99[$n]}); l5=$(median ${LAT_P50[$n]})
  echo "$n node(s): hold/release $h req/s (ratio to redis $(ratio "$h" "$r"); holds only $(ratio "$h/2" "$r")), closed-loop p99s: ${HOLD_P99[$n]}; open-loop hold p50 $l5 ms p99 $lp ms; confirms $c/s (ratio to pgbench $(ratio "$c" "$p"))"
done
fi

# d. Redis memory of the stadium with every seat held.
if [ "${BENCH_MEMORY:-1}" = 1 ]; then
  echo "== Redis memory: ev_1 (60,000 seats) fully held, one node"
  start_redis
  pick_base 1
  CLUSTER_UP=1
  cluster up 1 >"$WORK/cluster-up.log" 2>&1 || { cat "$WORK/cluster-up.log" >&2; exit 1; }
  prefix=$(awk -F= '/^PREFIX=/ {print $2}' "$WORK/cluster/cluster.env")
  keys_of_event() {
    redis-cli -p "$RPORT" --scan --pattern "${prefix}{ev:1}:*" | while read -r k; do
      echo "$k $(redis-cli -p "$RPORT" TYPE "$k") $(redis-cli -p "$RPORT" MEMORY USAGE "$k" SAMPLES 0)"
    done
  }
  used() { redis-cli -p "$RPORT" INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'; }
  before=$(used)
  echo "used_memory with every demo event loaded, no holds: $before bytes ($(redis-cli -p "$RPORT" dbsize) keys)"
  echo "ev_1 keys before:"; keys_of_event | sed 's/^/    /'
  python3 - "$BASE" <<'PY'
import http.client, json, sys, threading
port = int(sys.argv[1])
held = [0, 0]; lock = threading.Lock()
def fill(name, done):
    """Holds best-available seats as fresh users (8 seats each, then 1) until refused."""
    c = http.client.HTTPConnection("127.0.0.1", port)
    u = 0
    while not done.is_set():
        u += 1
        c.request("POST", "/v1/auth/token", json.dumps({"user": f"filler{name}-{u}", "role": "fan"}), {"Content-Type": "application/json"})
        token = json.loads(c.getresponse().read())["token"]
        for count in (8, 1):
            c.request("POST", "/v1/events/ev_1/holds", json.dumps({"best_available": {"count": count}}),
                      {"Content-Type": "application/json", "Authorization": "Bearer " + token})
            r = c.getresponse(); body = json.loads(r.read())
            if r.status == 201:
                with lock: held[0] += len(body["seats"]); held[1] += 1
                break
        else:
            done.set()
done = threading.Event()
threads = [threading.Thread(target=fill, args=(w, done)) for w in range(8)]
for t in threads: t.start()
for t in threads: t.join()
fill("tail", threading.Event())  # the last seats, one at a time, until none is left
c = http.client.HTTPConnection("127.0.0.1", port)
c.request("GET", "/v1/events/ev_1/availability", headers={"Accept": "application/json"})
print(f"held {held[0]} seats in {held[1]} holds; available now:", json.loads(c.getresponse().read())["available_count"])
PY
  after=$(used)
  echo "ev_1 keys after:"; keys_of_event | tee "$WORK/keys-after" | sed 's/^/    /'
  sum=$(awk '{s += $3} END {print s}' "$WORK/keys-after")
  nochanges=$(awk '$1 !~ /:changes$/ {s += $3} END {print s}' "$WORK/keys-after")
  echo "used_memory delta: $((after - before)) bytes ($(awk "BEGIN{printf \"%.2f\", ($after-$before)/1048576}") MiB); MEMORY USAGE of ev_1's keys: $sum bytes ($(awk "BEGIN{printf \"%.2f\", $sum/1048576}") MiB), without the change feed $nochanges bytes; estimate ~3.6 MB"
  cluster down >/dev/null; CLUSTER_UP=""
  stop_redis
fi
