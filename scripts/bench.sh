#!/usr/bin/env bash
# The benchmark suite in one command: anchors and boxoffice's figures in the same run, on
# the same machine, one table of medians and ratios (ours / anchor). See
# docs/benchmarks.md, "The suite (scripts/bench.sh)".
#
#   scripts/bench.sh [--quick] [--runs N] [--duration SECONDS] [--cluster N]
#
# Builds the release binary and the bare handler (crates/loadgen/examples/bare_hyper.rs),
# then, per run (3; --quick: 1 run of 2 s per figure), with the system under test pinned
# to core BENCH_SUT_CPU (0) and every client to core BENCH_GEN_CPU (1):
#   anchors  a private redis-server (no persistence): redis-benchmark -c 50 unpipelined,
#            SET NX EX of a random seat key, then EVALSHA of the 2-seat all-or-nothing
#            hold script; pgbench -c 50 -j 2 on a fresh database (bench_anchor, dropped at
#            the end) with a 60,000-row seats table: a conditional-UPDATE hold and its
#            release, and a SELECT ... FOR UPDATE hold of a Zipf-distributed seat and its
#            release (the machine's PostgreSQL, unpinned); the bare hyper handler's 7.5 KB
#            bitmap with wrk -t1 -c64 and with boxoffice loadtest (the generator against
#            wrk), and its trivial `ok` with both pipelined 16 deep (the generator's
#            ceiling);
#   ours     `boxoffice serve --demo` on a fresh data dir (fsync journal, per-user rate
#            limit off, payment latency 0): holds (hold + release, closed loop), holds on
#            Zipf seats, hold latency open loop at half the measured capacity, the
#            availability bitmap and the browse scenario, hot-seats, a short onsale, and
#            durable confirms (hold + checkout).
#            With --cluster N: the same figures against N nodes in distributed mode
#            instead (scripts/cluster.sh on a private redis-server pinned with the nodes,
#            the machine's PostgreSQL and NATS), each loadtest spreading its connections
#            over the N nodes (`--target URL1,URL2,...`). N nodes on 2 cores is
#            oversubscription: the figures show the cost of sharing, not scale-out.
# Every client command is bounded by `timeout`, the whole script by BENCH_MAX_SECONDS.
# Before each figure it waits for the 1-minute load average to drop below BENCH_MAX_LOAD
# (1.5), BENCH_LOAD_WAIT seconds in all over the whole run (900; --quick: 0), and records
# the load next to the figure ("!" when it had not dropped).
#
# Output: the table on stdout, and in BENCH_OUT (default
# $CARGO_TARGET_DIR/bench/<UTC time>/): table.md (machine, date, load, table),
# records.tsv, and the loadtest JSON and HTML reports.
#
# Environment: BENCH_BIN (server binary; default: build the release), BENCH_NO_BUILD=1
# (use the binaries already in the target dir), BENCH_RUNS,
# BENCH_DURATION, BENCH_SUT_CPU, BENCH_GEN_CPU ("" for no pinning), BENCH_MAX_LOAD,
# BENCH_LOAD_WAIT, BENCH_MAX_SECONDS, BENCH_POSTGRES (postgres://postgres@127.0.0.1:5432),
# BENCH_HOT_EVENT (ev_1: the demo's event on sale), BENCH_PIPELINE (16). Installs redis-tools, redis-server,
# postgresql-client and wrk (apt) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

QUICK=0
CLUSTER_N=0
RUNS="${BENCH_RUNS:-}"
DURATION="${BENCH_DURATION:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --runs) RUNS="$2"; shift ;;
    --duration) DURATION="$2"; shift ;;
    --cluster) CLUSTER_N="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  RUNS="${RUNS:-1}"; DURATION="${DURATION:-2}"; LOAD_WAIT="${BENCH_LOAD_WAIT:-0}"; MAX_SECONDS="${BENCH_MAX_SECONDS:-900}"
else
  RUNS="${RUNS:-3}"; DURATION="${DURATION:-10}"; LOAD_WAIT="${BENCH_LOAD_WAIT:-900}"; MAX_SECONDS="${BENCH_MAX_SECONDS:-5400}"
fi
case "$CLUSTER_N" in ''|*[!0-9]*) echo "--cluster takes a node count, 1-16" >&2; exit 2 ;; esac
[ "$CLUSTER_N" -le 16 ] || { echo "--cluster takes a node count, 1-16" >&2; exit 2; }
MAX_LOAD="${BENCH_MAX_LOAD:-1.5}"
SUT_CPU="${BENCH_SUT_CPU-0}"
GEN_CPU="${BENCH_GEN_CPU-1}"
PG="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
PGDB=bench_anchor
HOT_EVENT="${BENCH_HOT_EVENT:-ev_1}"
DEPTH="${BENCH_PIPELINE:-16}"
CONNS=64
# Each client gets its duration plus this much for set-up, audit and clean-up.
MARGIN=120
SECS=${DURATION%.*}; [ "${SECS:-0}" -ge 1 ] || SECS=1
bench_pinning "$SUT_CPU" "$GEN_CPU"

ensure_tool redis-benchmark redis-tools
ensure_tool redis-server redis-server
ensure_tool pgbench postgresql-client
ensure_tool psql postgresql-client
ensure_tool wrk wrk
for tool in taskset timeout python3 curl; do command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }; done

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  if [ -z "${BENCH_BIN:-}" ]; then cargo build --release -p boxoffice-server >&2; fi
  cargo build --release -p boxoffice-loadgen --example bare_hyper --example bench_table >&2
fi

OUT="${BENCH_OUT:-$CARGO_TARGET_DIR/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
REC="$OUT/records.tsv"; : >"$REC"
WORK=$(mktemp -d)
# Private copies: a rebuild of the shared target dir during the run must not change what
# is measured.
cp "${BENCH_BIN:-$CARGO_TARGET_DIR/release/boxoffice}" "$WORK/boxoffice"
cp "$CARGO_TARGET_DIR/release/examples/bare_hyper" "$CARGO_TARGET_DIR/release/examples/bench_table" "$WORK/"
BIN="$WORK/boxoffice"

REDIS_PID=""; SERVER_PID=""; BARE_PID=""; PG_MADE=""; WATCHDOG=""; CLUSTER_UP=""
cluster() {
  CLUSTER_STATE_DIR="$WORK/cluster" CLUSTER_REDIS="127.0.0.1:$RPORT" CLUSTER_BASE_PORT="$BASE" \
  CLUSTER_POSTGRES="$PG" BOXOFFICE_BIN="$BIN" BOXOFFICE_PAYMENT_LATENCY_MS=0 BOXOFFICE_RATE_LIMIT_PER_USER=0 \
  BOXOFFICE_LOG=warn "${SUT[@]}" scripts/cluster.sh "$@"
}
stop() {  # pid variable name
  local pid=${!1}
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  printf -v "$1" '%s' ""
}
cleanup() {
  if [ -n "$CLUSTER_UP" ]; then cluster down >/dev/null 2>&1 || true; fi
  stop SERVER_PID; stop BARE_PID; stop_redis
  [ -n "$PG_MADE" ] && pg_drop_db "$PG" "$PGDB"
  [ -n "$WATCHDOG" ] && kill "$WATCHDOG" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "bench.sh: stopped" >&2; exit 130' INT TERM
# The overall bound: every client is bounded by its own timeout; this catches the rest.
( trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  sleep "$MAX_SECONDS" & nap=$!; wait "$nap"
  echo "bench.sh: time limit of ${MAX_SECONDS}s reached, stopping" >&2; kill -TERM $$ ) 2>/dev/null &
WATCHDOG=$!

MACHINE=$(machine_line)
if [ "$CLUSTER_N" -gt 0 ]; then
  MODE="system under test: $CLUSTER_N node(s) in distributed mode (private redis-server pinned with them; PostgreSQL and NATS unpinned); the 'fsync journal' notes do not apply"
else
  MODE="system under test: one embedded server"
fi
echo "$MACHINE"
echo "$MODE"
echo "runs: $RUNS x ${DURATION}s per figure; system under test on core '${SUT_CPU:-none}', clients on core '${GEN_CPU:-none}'; output: $OUT"
if awk "BEGIN{exit !($(load1) > 0.5)}"; then echo "WARNING: load average $(load1) > 0.5 before the run; figures will be noisy" >&2; fi
PG_OK=1
psql "$PG/postgres" -qAtc 'select 1' >/dev/null 2>&1 || { PG_OK=0; echo "WARNING: no PostgreSQL at $PG: the pgbench anchors are skipped" >&2; }

# Waits for a quiet machine (see `quiet`) within what is left of the run's waiting
# budget; the load average goes to `l`.
settle() {
  local t0=$SECONDS
  l=$(quiet)
  LOAD_WAIT=$((LOAD_WAIT - (SECONDS - t0))); [ "$LOAD_WAIT" -ge 0 ] || LOAD_WAIT=0
}
row() { printf 'row\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$REC"; }  # id label unit anchor|""|ANCHOR-ID note
val() { printf 'value\t%s\t%s\t%s\n' "$1" "${2:-}" "$3" >>"$REC"; echo "run $run: [load $3] $1: ${2:-failed}" >&2; }

row redis_set "Redis SET NX EX" ops/s anchor "redis-benchmark -c 50 -r 60000, private redis-server"
row redis_eval "Redis EVALSHA 2-seat hold" scripts/s anchor "all-or-nothing script, SET EX 600 both"
row pg_update "pgbench UPDATE hold + release" tx/s anchor "PostgreSQL (unpinned), -c 50; one tx = hold and release"
row pg_for_update "pgbench FOR UPDATE hold + release" tx/s anchor "PostgreSQL (unpinned), -c 50; Zipf 1.1 seats"
row wrk_bitmap "bare hyper: 7.5 KB bitmap, wrk" req/s anchor "examples/bare_hyper.rs; wrk -t1 -c64"
row lt_bitmap "bare hyper: 7.5 KB bitmap, loadtest" req/s wrk_bitmap "the generator vs wrk (rule: >= 0.80x)"
row wrk_pipe "bare hyper: 'ok', wrk pipelined $DEPTH" req/s anchor "trivial handler; -c64"
row lt_pipe "bare hyper: 'ok', loadtest --pipeline $DEPTH" req/s wrk_pipe "the generator's ceiling (target >= 200,000)"
row holds_req "holds: hold + release requests" req/s redis_set "ev_1 (60,000 seats), fsync journal, closed loop"
row holds_pairs "holds: hold/release pairs (holds answered)" holds/s redis_eval "single-seat holds vs the 2-seat script"
row holds_zipf "holds on Zipf 1.1 seats: holds answered" holds/s pg_for_update "201 or 409 each"
if [ "$CLUSTER_N" -gt 0 ]; then
  row redis_per_req "holds: Redis commands per request" cmds "" "INFO stats delta / requests; commands inside scripts and background loops included"
  row redis_rtt_per_req "holds: Redis script calls per request" calls "" "INFO commandstats EVAL/EVALSHA/FCALL / requests; background loops included"
fi
row hold_p50 "hold latency p50, open loop at half capacity" ms "" "no coordinated omission"
row hold_p99 "hold latency p99, open loop at half capacity" ms "" ""
row availability "GET /v1/events/ev_1/availability (7.5 KB)" req/s lt_bitmap "same client as the bare handler"
row browse "browse: event, seat map, availability (ETags)" req/s "" "mostly 304s"
row hot_seats "hot-seats: 1,000 users, 10 seats" answers/s "" "$HOT_EVENT; hold + checkout, 409s once sold"
row onsale_orders "onsale: orders per second" orders/s "" "fans arriving at 50/s; waiting room, map, hold, pay"
row onsale_ttfo "onsale: time to order p50" ms "" "arrival to order"
row onsale_admitted "onsale: admitted per second" fans/s "" "waiting room admissions"
row onsale_holds "onsale: holds per second" holds/s "" "fans who held seats"
row onsale_hold_p99 "onsale: hold latency p99" ms "" ""
row onsale_checkout_p99 "onsale: checkout latency p99" ms "" "payment latency 0"
row confirms "durable confirms (hold + checkout)" checkouts/s pg_update "201 checkouts; payment latency 0"

# A figure from a loadtest JSON report, by a Python expression over `d`.
jq_py() {  # file expression
  [ -s "$1" ] || return 0
  python3 - "$1" "$2" <<'PY' 2>/dev/null || true
import json, sys
d = json.load(open(sys.argv[1]))
op = lambda name: next(o for o in d["operations"] if o["name"] == name)
v = eval(sys.argv[2], {"d": d, "op": op})
print(f"{v:.3f}" if isinstance(v, float) else v)
PY
}
# Runs `boxoffice loadtest` on the generator's core, bounded; the JSON report in $OUT.
loadtest() {  # name flags...
  local name=$1; shift
  timeout $((SECS + MARGIN)) "${GEN[@]}" "$BIN" loadtest --duration "$DURATION" --quiet \
    --json "$OUT/$name-run$run.json" --html "$OUT/$name-run$run.html" "$@" >"$WORK/loadtest.log" 2>&1 \
    || { echo "  loadtest $name exited $?: $(tail -n 2 "$WORK/loadtest.log" | tr '\n' ' ')" >&2; }
}
wrk_rps() {  # wrk args...
  timeout $((SECS + 30)) "${GEN[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$@" 2>/dev/null | awk '/Requests\/sec/ {print $2}'
}
cat >"$WORK/pipeline.lua" <<EOF
-- $DEPTH requests per write: HTTP/1.1 pipelining, as wrk's own pipeline example.
init = function(args)
  local r = {}
  for i = 1, $DEPTH do r[i] = wrk.format(nil, "/ok") end
  req = table.concat(r)
end
request = function() return req end
EOF
pg_hold_sql >"$WORK/pg-hold.sql"
pg_for_update_sql >"$WORK/pg-for-update.sql"
REDIS_REQUESTS=$(awk "BEGIN{printf \"%d\", $DURATION * 80000}")

for run in $(seq 1 "$RUNS"); do
  echo "== run $run of $RUNS" >&2
  # Anchors: Redis.
  start_redis
  settle; val redis_set "$(redis_rps "$RPORT" "$REDIS_REQUESTS" 50 SET 'seat:__rand_int__' x NX EX 600)" "$l"
  sha=$(redis-cli -p "$RPORT" SCRIPT LOAD "$ANCHOR_LUA")
  settle; val redis_eval "$(redis_rps "$RPORT" "$REDIS_REQUESTS" 50 EVALSHA "$sha" 2 '{ev1}:seat:__rand_int__' '{ev1}:seat:__rand_int__' u 600)" "$l"
  stop_redis

  # Anchors: PostgreSQL.
  if [ "$PG_OK" = 1 ]; then
    PG_MADE=1
    pg_seats_db "$PG" "$PGDB"
    settle; val pg_update "$(pgbench_tps "$PG" "$PGDB" "$SECS" "$WORK/pg-hold.sql")" "$l"
    settle; val pg_for_update "$(pgbench_tps "$PG" "$PGDB" "$SECS" "$WORK/pg-for-update.sql")" "$l"
    pg_drop_db "$PG" "$PGDB"; PG_MADE=""
  fi

  # Anchors: the bare handler, and the generator against wrk.
  bport=$(free_port)
  "${SUT[@]}" "$WORK/bare_hyper" "127.0.0.1:$bport" >"$WORK/bare.log" 2>&1 &
  BARE_PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$bport/ok" >/dev/null && break; sleep 0.1; done
  settle; val wrk_bitmap "$(wrk_rps "http://127.0.0.1:$bport/bitmap")" "$l"
  settle; loadtest bare-bitmap --target "http://127.0.0.1:$bport" --scenario bare --path /bitmap --connections "$CONNS"
  val lt_bitmap "$(jq_py "$OUT/bare-bitmap-run$run.json" 'd["throughput"]')" "$l"
  settle; val wrk_pipe "$(wrk_rps -s "$WORK/pipeline.lua" "http://127.0.0.1:$bport")" "$l"
  settle; loadtest bare-pipelined --target "http://127.0.0.1:$bport" --scenario bare --path /ok --connections "$CONNS" --pipeline "$DEPTH"
  val lt_pipe "$(jq_py "$OUT/bare-pipelined-run$run.json" 'd["throughput"]')" "$l"
  stop BARE_PID

  # Ours: one embedded server, or N nodes in distributed mode.
  if [ "$CLUSTER_N" -gt 0 ]; then
    start_redis
    pick_base "$CLUSTER_N"
    CLUSTER_UP=1
    cluster up "$CLUSTER_N" >"$WORK/cluster.log" 2>&1 || { tail -n 5 "$WORK/cluster.log" >&2; exit 1; }
    target=$(seq -s, -f "http://127.0.0.1:%g" "$BASE" $((BASE + CLUSTER_N - 1)))
  else
    port=$(free_port)
    BOXOFFICE_PAYMENT_LATENCY_MS=0 "${SUT[@]}" "$BIN" serve --demo --addr "127.0.0.1:$port" --data-dir "$WORK/data-$run" \
      --journal-sync fsync --rate-limit-per-user 0 --log warn >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$port" || { tail -n 5 "$WORK/server.log" >&2; exit 1; }
    target="http://127.0.0.1:$port"
  fi
  settle
  [ "$CLUSTER_N" -gt 0 ] && cmds_before=$(redis_commands "$RPORT") && calls_before=$(redis_script_calls "$RPORT")
  loadtest holds --target "$target" --scenario holds --connections "$CONNS"
  f="$OUT/holds-run$run.json"
  val holds_req "$(jq_py "$f" 'd["throughput"]')" "$l"
  val holds_pairs "$(jq_py "$f" 'op("hold")["rate"]')" "$l"
  if [ "$CLUSTER_N" -gt 0 ]; then
    reqs=$(jq_py "$f" 'd["requests"]')
    val redis_per_req "$(awk -v a="$cmds_before" -v b="$(redis_commands "$RPORT")" -v r="${reqs:-0}" 'BEGIN{if (r > 0) printf "%.2f", (b - a) / r}')" "$l"
    val redis_rtt_per_req "$(awk -v a="$calls_before" -v b="$(redis_script_calls "$RPORT")" -v r="${reqs:-0}" 'BEGIN{if (r > 0) printf "%.2f", (b - a) / r}')" "$l"
  fi
  capacity=$(jq_py "$f" 'd["throughput"]')
  settle; loadtest holds-zipf --target "$target" --scenario holds --zipf 1.1 --connections "$CONNS"
  val holds_zipf "$(jq_py "$OUT/holds-zipf-run$run.json" 'op("hold")["rate"]')" "$l"
  if [ -n "$capacity" ]; then
    settle; loadtest holds-latency --target "$target" --scenario holds --connections "$CONNS" \
      --rate "$(awk "BEGIN{printf \"%.0f\", $capacity / 2}")"
    f="$OUT/holds-latency-run$run.json"
    val hold_p50 "$(jq_py "$f" 'op("hold")["latency_us"]["p50"] / 1000')" "$l"
    val hold_p99 "$(jq_py "$f" 'op("hold")["latency_us"]["p99"] / 1000')" "$l"
  fi
  settle; loadtest availability --target "$target" --scenario bare --path /v1/events/ev_1/availability --connections "$CONNS"
  val availability "$(jq_py "$OUT/availability-run$run.json" 'd["throughput"]')" "$l"
  settle; loadtest browse --target "$target" --scenario browse --connections "$CONNS"
  val browse "$(jq_py "$OUT/browse-run$run.json" 'd["throughput"]')" "$l"
  settle; loadtest hot-seats --target "$target" --scenario hot-seats --event "$HOT_EVENT" --seats 10 --users 1000 --connections "$CONNS"
  val hot_seats "$(jq_py "$OUT/hot-seats-run$run.json" 'd["throughput"]')" "$l"
  settle; loadtest onsale --target "$target" --scenario onsale --rate 50 --connections 256
  f="$OUT/onsale-run$run.json"
  val onsale_orders "$(jq_py "$f" 'd["onsale"]["paid"] / d["elapsed_s"]')" "$l"
  val onsale_ttfo "$(jq_py "$f" 'd["onsale"]["time_to_order_us"]["p50"] / 1000')" "$l"
  val onsale_admitted "$(jq_py "$f" 'd["onsale"]["admitted"] / d["elapsed_s"]')" "$l"
  val onsale_holds "$(jq_py "$f" 'd["onsale"]["held"] / d["elapsed_s"]')" "$l"
  val onsale_hold_p99 "$(jq_py "$f" 'op("hold")["latency_us"]["p99"] / 1000')" "$l"
  val onsale_checkout_p99 "$(jq_py "$f" 'op("checkout")["latency_us"]["p99"] / 1000')" "$l"
  settle; loadtest confirms --target "$target" --scenario holds --mix hold-checkout --connections "$CONNS"
  val confirms "$(jq_py "$OUT/confirms-run$run.json" 'op("checkout")["statuses"].get("201", 0) / d["elapsed_s"]')" "$l"
  for f in "$OUT"/*-run"$run".json; do
    audit=$(jq_py "$f" '"-" if d.get("audit") is None else ("passed" if d["audit"]["passed"] else "FAILED")')
    if [ "$audit" = FAILED ]; then echo "WARNING: the oversell audit of $(basename "$f") FAILED" >&2; fi
  done
  stop SERVER_PID
  if [ -n "$CLUSTER_UP" ]; then cluster down >/dev/null 2>&1 || true; CLUSTER_UP=""; stop_redis; fi
  rm -rf "$WORK/data-$run"
done

TABLE=$("$WORK/bench_table" "$REC")
{
  echo "$MACHINE"
  echo "$MODE"
  echo
  echo "$RUNS run(s) x ${DURATION}s per figure; system under test on core '${SUT_CPU:-none}', clients on core '${GEN_CPU:-none}' (PostgreSQL unpinned); load average after: $(uptime | sed 's/.*load average: //')"
  echo
  echo "$TABLE"
} >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
echo "written: $OUT/table.md (and records.tsv, loadtest JSON/HTML reports)"
