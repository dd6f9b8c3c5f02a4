#!/usr/bin/env bash
# Queue benchmark: clusterd vs BullMQ in the same run, on one private
# redis-server (127.0.0.1:$PORT, persistence off, as in the BullMQ baselines),
# FLUSHALL before every run. Measures bulk enqueue jobs/s and no-op processing
# jobs/s with 1 and 2 consumer processes, plus Redis commands and Redis CPU
# per job (INFO stats / /proc/<redis>/stat), and prints clusterd/BullMQ ratios.
#
#   bench/queue_vs_bullmq.sh [N]        (build first; needs `npm ci` in the peers dir)
# Env: BUILD (default ./build), PEERS (default /work/shared/peers), PORT (default 6397).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; PEERS="${PEERS:-/work/shared/peers}"; PORT="${PORT:-6397}"
N="${1:-100000}"
CLI="$BUILD/cli/clusterd"; CONSUMER="$BUILD/tests/queue/queue_test_consumer"
URL="redis://127.0.0.1:$PORT"
TMP="$(mktemp -d)"; PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; [[ -n "${RPID:-}" ]] && { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; }; rm -rf "$TMP"; }
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$TMP" --save '' --appendonly no --daemonize no --logfile "$TMP/r.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
rc() { redis-cli -p "$PORT" "$@"; }
cmds() { rc info stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p'; }
cpu() { awk '{printf "%.3f", ($14+$15)/100}' "/proc/$RPID/stat"; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

declare -A R
# ---- clusterd ----
seq "$N" | sed 's/.*/{"n": &}/' > "$TMP/payloads"
rc flushall >/dev/null
c0=$(cmds); u0=$(cpu); t0=$(now)
"$CLI" --redis "$URL" enqueue bench noop --bulk "$TMP/payloads" >/dev/null
t1=$(now); c1=$(cmds); u1=$(cpu)
R[c_enq]=$(calc "round($N/($t1-$t0))"); R[c_enq_cpu]=$(calc "round(($u1-$u0)*1e6/$N,1)")
for procs in 1 2; do
  rc flushall >/dev/null
  "$CLI" --redis "$URL" enqueue bench noop --bulk "$TMP/payloads" >/dev/null
  c0=$(cmds); u0=$(cpu); t0=$(now)
  PIDS=()
  for i in $(seq "$procs"); do "$CONSUMER" "$URL" bench 50 /dev/null /dev/null 0 2>/dev/null & PIDS+=($!); done
  while [[ "$(rc hget 'cq:{bench}:stats' completed)" != "$N" ]]; do sleep 0.02; done
  t1=$(now); c1=$(cmds); u1=$(cpu)
  for p in "${PIDS[@]}"; do kill -TERM "$p"; wait "$p" 2>/dev/null || true; done; PIDS=()
  R[c_proc$procs]=$(calc "round($N/($t1-$t0))")
  R[c_proc${procs}_cmds]=$(calc "round(($c1-$c0)/$N,2)")
  R[c_proc${procs}_cpu]=$(calc "round(($u1-$u0)*1e6/$N,1)")
done
rc flushall >/dev/null
c_lat=$("$BUILD/bench/queue_latency" "$URL" 2000 10 2>/dev/null); echo "clusterd stream: $c_lat" >&2
# ---- BullMQ (the peers' own driver) ----
cd "$PEERS"
bull() { rc flushall >/dev/null; REDIS_PORT=$PORT REDIS_PID=$RPID timeout 400 node bull/bench.js "$@" | sed -n 's/^RESULT //p'; }
jget() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d.get('$2', d.get('jobs_per_s', 0)))" "$1"; }
b_enq=$(bull enqueue-bulk "$N" 1000); echo "bullmq enqueue: $b_enq" >&2
b_p1=$(bull process "$N" 1 50); echo "bullmq process 1: $b_p1" >&2
b_p2=$(bull process "$N" 2 50); echo "bullmq process 2: $b_p2" >&2
R[b_enq]=$(jget "$b_enq" jobs_per_s); R[b_proc1]=$(jget "$b_p1" jobs_per_s); R[b_proc2]=$(jget "$b_p2" jobs_per_s)
R[b_proc1_cmds]=$(jget "$b_p1" redis_cmds_per_job); R[b_proc1_cpu]=$(jget "$b_p1" redis_cpu_us_per_job)
R[b_enq_cpu]=$(jget "$b_enq" redis_cpu_us_per_job)
b_lat=$(bull stream 2000 10 1 50); echo "bullmq stream: $b_lat" >&2
lat() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d$2)" "$1"; }

echo "| metric | clusterd | BullMQ | ratio |"
echo "|---|---|---|---|"
echo "| bulk enqueue, jobs/s | ${R[c_enq]} | ${R[b_enq]} | $(calc "round(${R[c_enq]}/max(${R[b_enq]},1),1)")x |"
echo "| no-op processing, 1 process x 50, jobs/s | ${R[c_proc1]} | ${R[b_proc1]} | $(calc "round(${R[c_proc1]}/max(${R[b_proc1]},1),1)")x |"
echo "| no-op processing, 2 processes x 50, jobs/s | ${R[c_proc2]} | ${R[b_proc2]} | $(calc "round(${R[c_proc2]}/max(${R[b_proc2]},1),1)")x |"
echo "| Redis commands per processed job (1 process) | ${R[c_proc1_cmds]} | ${R[b_proc1_cmds]} | $(calc "round(${R[c_proc1_cmds]}/max(${R[b_proc1_cmds]},0.01),2)")x |"
echo "| Redis CPU per processed job, us (1 process) | ${R[c_proc1_cpu]} | ${R[b_proc1_cpu]} | $(calc "round(${R[c_proc1_cpu]}/max(${R[b_proc1_cpu]},0.01),2)")x |"
echo "| 2,000 jobs/s offered: enqueue -> start p50 / p99, ms | $(lat "$c_lat" "['start_p50_ms']") / $(lat "$c_lat" "['start_p99_ms']") | $(lat "$b_lat" "['pickup_ms']['p50']") / $(lat "$b_lat" "['pickup_ms']['p99']") | |"
echo "| 2,000 jobs/s offered: enqueue -> completed p50 / p99, ms | $(lat "$c_lat" "['done_p50_ms']") / $(lat "$c_lat" "['done_p99_ms']") | $(lat "$b_lat" "['complete_ms']['p50']") / $(lat "$b_lat" "['complete_ms']['p99']") | |"
echo "| Redis CPU per enqueued job, us | ${R[c_enq_cpu]} | ${R[b_enq_cpu]} | $(calc "round(${R[c_enq_cpu]}/max(${R[b_enq_cpu]},0.01),2)")x |"
