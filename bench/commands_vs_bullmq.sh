#!/usr/bin/env bash
# Command handlers vs BullMQ's sandboxed processor, in the same run, on one
# private redis-server (127.0.0.1:$PORT, persistence off), FLUSHALL before
# every run. Each side drains N jobs with CONC jobs at once, and each job
# logs one line to stderr (the trivial work):
#   - clusterd, per-job mode: `clusterd worker` runs `/bin/sh -c 'echo job … >&2'` per job;
#   - clusterd, persistent mode: the worker keeps `node bench/commands_persistent.js`
#     processes, one job per line;
#   - BullMQ 6.7: a Worker whose processor is a file (bench/commands_bullmq_processor.js),
#     which BullMQ runs in child processes it keeps.
# Each side's clock starts when its consumer is ready and the jobs are
# enqueued (bulk), and stops when the last one completed. Prints jobs/s and
# the clusterd/BullMQ ratios, and `uptime` before each side (the machine may
# be shared; the ratios are what count).
#
#   bench/commands_vs_bullmq.sh [N] [CONC]   (build first; needs `npm ci` in the peers dir)
# Env: BUILD (default ./build), PEERS (default /work/shared/peers), PORT (default 6398).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; PEERS="${PEERS:-/work/shared/peers}"; PORT="${PORT:-6398}"
N="${1:-2000}"; CONC="${2:-16}"
FULL="$BUILD/cli/clusterd-full"; CLI="$BUILD/cli/clusterd"
URL="redis://127.0.0.1:$PORT"
TMP="$(mktemp -d)"; WPID=""
cleanup() {
  [[ -n "$WPID" ]] && { kill "$WPID" 2>/dev/null; wait "$WPID" 2>/dev/null || true; }
  [[ -n "${RPID:-}" ]] && { kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null || true; }
  rm -rf "$TMP"
}
trap cleanup EXIT
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$TMP" --save '' --appendonly no --daemonize no --logfile "$TMP/r.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
rc() { redis-cli -p "$PORT" "$@"; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
load() { echo "uptime before $1: $(uptime)" >&2; }

cat > "$TMP/eco.yaml" <<EOF
queue:
  redis_url: $URL
handlers:
  log.once:
    command: [/bin/sh, -c, 'echo "job \$CLUSTERD_JOB_ID" >&2']
  log.kept:
    command: [node, $ROOT/bench/commands_persistent.js]
    mode: persistent
apps:
  - name: cmdbench
    script: builtin:worker
    queues: {cmdbench: $CONC}
EOF
seq "$N" | sed 's/.*/{"n": &}/' > "$TMP/payloads"

# One clusterd run: start the worker, wait until it consumes, enqueue N jobs
# named $1 in bulk, wait for N completions; prints jobs/s.
clusterd_run() {
  rc flushall >/dev/null
  "$FULL" worker --ecosystem "$TMP/eco.yaml" --app cmdbench --listen 127.0.0.1:0 > "$TMP/worker-$1.log" 2>&1 &
  WPID=$!
  for _ in $(seq 200); do grep -q "consuming" "$TMP/worker-$1.log" && break; sleep 0.05; done
  local t0 t1
  t0=$(now)
  "$CLI" --redis "$URL" enqueue cmdbench "$1" --bulk "$TMP/payloads" >/dev/null
  while [[ "$(rc hget 'cq:{cmdbench}:stats' completed)" != "$N" ]]; do sleep 0.02; done
  t1=$(now)
  kill -TERM "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=""
  calc "round($N/($t1-$t0))"
}

load "clusterd per-job"; c_once=$(clusterd_run log.once); echo "clusterd per-job: $c_once jobs/s" >&2
load "clusterd persistent"; c_kept=$(clusterd_run log.kept); echo "clusterd persistent: $c_kept jobs/s" >&2
rc flushall >/dev/null
load "BullMQ sandboxed"
b=$(REDIS_PORT=$PORT NODE_PATH="$PEERS/node_modules" timeout 600 node "$ROOT/bench/commands_bullmq.js" "$N" "$CONC" 2>"$TMP/bullmq.log")
b_rate=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['jobs_per_s'])" "$b")
echo "bullmq sandboxed: $b_rate jobs/s" >&2

echo "| $N jobs, $CONC at once, each logs one line | jobs/s | vs BullMQ sandboxed |"
echo "|---|---|---|"
echo "| clusterd command, per-job mode (/bin/sh per job) | $c_once | $(calc "round($c_once/max($b_rate,1),2)")x |"
echo "| clusterd command, persistent mode (node, one job per line) | $c_kept | $(calc "round($c_kept/max($b_rate,1),2)")x |"
echo "| BullMQ 6.7 sandboxed processor (node child processes) | $b_rate | 1x |"
