#!/usr/bin/env bash
# Redis's cost per processed job, counted in instructions rather than timed:
# redis-server runs under callgrind, N no-op jobs are enqueued, the counters
# are zeroed, one consumer process (concurrency 50) processes them, and the
# instructions Redis executed meanwhile are divided by N. Unlike CPU time on a
# shared VM, the count repeats to within a fraction of a percent, so two
# builds of the scripts can be compared on a busy machine. Redis runs about
# fifty times slower under callgrind, so every reservation is full and the
# figure is that of full batches.
#
#   bench/queue_redis_profile.sh [N]            (default 10000; build first)
# Env: BUILD (./build), CONC (the consumer's concurrency, 50; it takes half of it per
# reservation), CONSUMER (the consumer binary; default the build's
# tests/queue/queue_test_consumer), PORT (6399), KEEP (a path: keep the
# callgrind profile there, for callgrind_annotate --inclusive=yes).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; N="${1:-10000}"; PORT="${PORT:-6399}"
CONSUMER="${CONSUMER:-$BUILD/tests/queue/queue_test_consumer}"
URL="redis://127.0.0.1:$PORT"
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
TMP="$(mktemp -d)"
cleanup() {
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  [[ -n "${CPID:-}" ]] && kill "$CPID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" \
  redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no --dir "$TMP" \
  --logfile "$TMP/redis.log" >/dev/null 2>&1 &
VPID=$!
for _ in $(seq 300); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" ping >/dev/null 2>&1 || { echo "redis-server under valgrind did not start within 30 s" >&2; exit 1; }
seq "$N" | sed 's/.*/{"n": &}/' > "$TMP/payloads"
"$BUILD/cli/clusterd" --redis "$URL" enqueue bench noop --bulk "$TMP/payloads" >/dev/null 2>&1

callgrind_control -z "$VPID" >/dev/null 2>&1
redis-cli -p "$PORT" config resetstat >/dev/null
"$CONSUMER" "$URL" bench "${CONC:-50}" /dev/null /dev/null 0 2>/dev/null &
CPID=$!
# At most 20 minutes (Redis runs about fifty times slower under callgrind).
for ((waited = 0; ; waited++)); do
  [[ "$(redis-cli -p "$PORT" hget 'cq:{bench}:stats' completed)" == "$N" ]] && break
  (( waited < 6000 )) || { echo "the consumer did not finish $N jobs within 20 minutes" >&2; exit 1; }
  sleep 0.2
done
callgrind_control -d "$VPID" >/dev/null 2>&1
kill "$CPID"; wait "$CPID" 2>/dev/null || true; CPID=

sleep 1
profile=$(ls -t "$TMP"/cg.out* | head -1)
total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$profile" | head -1)
[[ -n "$total" ]] || total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$profile" | head -1)
calls=$(redis-cli -p "$PORT" info commandstats | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')
[[ -n "${KEEP:-}" ]] && cp "$profile" "$KEEP"
echo "jobs $N, script calls ${calls:-0}, Redis instructions per processed job $((total / N))"
