#!/usr/bin/env bash
# Worker HTTP benchmark, every system in the same run with 2 worker
# processes and `wrk -t2 -c100 -d$DUR --latency` (keep-alive):
#   1. GET /health of the built-in worker under the clusterd master
#      (Redis check cached for a second) vs nginx `return 200` (2 workers)
#      vs a Node http server under PM2 cluster mode (2 instances);
#   2. POST /v1/queues/q/jobs (one job per request) vs BullMQ's Queue.add
#      behind a plain Node http endpoint under PM2 cluster mode (2 instances).
# Prints requests/s, p50/p99 latency, errors, worker RSS and the ratios.
#
#   bench/worker_vs_nginx.sh            (build first; peers need node_modules)
# Env: BUILD (./build), PEERS (/work/shared/peers; a copy with node_modules
# works, e.g. /tmp/worker-peers), DUR (10s), REDIS_PORT (6396), ports
# NGINX_PORT (8393), PM2_PORT (8394), CLUSTERD_PORT (8395).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; PEERS="${PEERS:-/work/shared/peers}"; DUR="${DUR:-10s}"
REDIS_PORT="${REDIS_PORT:-6396}"; NGINX_PORT="${NGINX_PORT:-8393}"
PM2_PORT="${PM2_PORT:-8394}"; CLUSTERD_PORT="${CLUSTERD_PORT:-8395}"
CLI="$BUILD/cli/clusterd"
TMP="$(mktemp -d)"
export PM2_HOME="$TMP/pm2" CLUSTERD_HOME="$TMP/clusterd"
PM2="$PEERS/node_modules/.bin/pm2"
REPORT="$PEERS/lib/report.lua"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
  [[ -n "${NGINX_PID:-}" ]] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
  timeout 30 "$PM2" kill >/dev/null 2>&1 || true
  timeout 30 "$CLI" kill >/dev/null 2>&1 || true
  [[ -n "${RPID:-}" ]] && kill "$RPID" 2>/dev/null || true
  sleep 0.5; rm -rf "$TMP" 2>/dev/null || true
}
trap cleanup EXIT
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
sum_rss_mb() { local t=0; for p in "$@"; do t=$((t + $(rss_kb "$p"))); done; python3 -c "print(round($t/1024/${#@},1))"; }
wait_http() { for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; log "no answer from $1"; return 1; }
# wrk_json URL [extra wrk args] -> the report line {"rps":..,"p50_ms":..,...}
wrk_json() {
  local url=$1; shift
  timeout 10 wrk -t2 -c100 -d2s "$@" "$url" >/dev/null 2>&1 || true   # warm-up
  timeout 120 wrk -t2 -c100 -d"$DUR" --latency -s "$REPORT" "$@" "$url" 2>&1 | sed -n 's/^WRKJSON //p'
}
# wrk with the POST body script, plus the report hook.
wrk_post() {
  local url=$1
  cat "$ROOT/bench/worker_post.lua" "$REPORT" > "$TMP/post.lua"
  timeout 10 wrk -t2 -c100 -d2s -s "$TMP/post.lua" "$url" >/dev/null 2>&1 || true
  timeout 120 wrk -t2 -c100 -d"$DUR" --latency -s "$TMP/post.lua" "$url" 2>&1 | sed -n 's/^WRKJSON //p'
}
j() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
errs() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['non2xx']+d['connect']+d['read']+d['write']+d['timeout'])" "$1"; }

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP" --save '' --appendonly no --daemonize no --logfile "$TMP/redis.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# ---- nginx: 2 workers, return 200 ----
mkdir -p "$TMP/nginx/logs"
cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type text/plain; return 200 "ok"; }
  }
}
CONF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/"
log "nginx"
NGINX=$(wrk_json "http://127.0.0.1:$NGINX_PORT/")
NGINX_RSS=$(sum_rss_mb $(cat /proc/$NGINX_PID/task/*/children))
kill -QUIT "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=

# ---- Node http under PM2 cluster mode, 2 instances ----
PORT=$PM2_PORT timeout 60 "$PM2" start "$PEERS/app/server.js" -i 2 --name web >/dev/null
wait_http "http://127.0.0.1:$PM2_PORT/"; sleep 1
log "node/pm2"
PM2GET=$(wrk_json "http://127.0.0.1:$PM2_PORT/")
PM2_PIDS=$(timeout 30 "$PM2" jlist | python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin)))")
PM2_RSS=$(sum_rss_mb $PM2_PIDS)
timeout 60 "$PM2" delete web >/dev/null

# ---- clusterd: built-in worker under the master, 2 instances ----
cat > "$TMP/eco.yaml" <<YAML
apps:
  - name: api
    script: builtin:worker
    exec_mode: cluster
    instances: 2
    listen: 127.0.0.1:$CLUSTERD_PORT
    wait_ready: true
queue:
  redis_url: redis://127.0.0.1:$REDIS_PORT
YAML
timeout 60 "$CLI" start "$TMP/eco.yaml" >/dev/null
wait_http "http://127.0.0.1:$CLUSTERD_PORT/health"; sleep 1
log "clusterd GET /health"
CGET=$(wrk_json "http://127.0.0.1:$CLUSTERD_PORT/health")
C_PIDS=$("$CLI" status --json | python3 -c "import json,sys; print(' '.join(str(w['pid']) for w in json.load(sys.stdin)))")
C_RSS_GET=$(sum_rss_mb $C_PIDS)
redis-cli -p "$REDIS_PORT" flushall >/dev/null
log "clusterd POST /v1/queues/q/jobs"
CPOST=$(wrk_post "http://127.0.0.1:$CLUSTERD_PORT/v1/queues/q/jobs")
C_RSS_POST=$(sum_rss_mb $C_PIDS)
C_JOBS=$(redis-cli -p "$REDIS_PORT" hget 'cq:{q}:stats' enqueued || echo "?")
timeout 60 "$CLI" kill >/dev/null

# ---- BullMQ behind a plain Node http endpoint, PM2 cluster mode, 2 instances ----
redis-cli -p "$REDIS_PORT" flushall >/dev/null
(cd "$PEERS" && PORT=$PM2_PORT REDIS_PORT=$REDIS_PORT NODE_PATH="$PEERS/node_modules" timeout 60 "$PM2" start "$ROOT/bench/worker_bullmq_endpoint.js" -i 2 --name bull >/dev/null)
for _ in $(seq 200); do [[ "$(curl -s -o /dev/null -w '%{http_code}' -XPOST -d '{"name":"x"}' "http://127.0.0.1:$PM2_PORT/v1/queues/w/jobs")" == 202 ]] && break; sleep 0.05; done
sleep 1
log "bullmq POST"
BPOST=$(wrk_post "http://127.0.0.1:$PM2_PORT/v1/queues/q/jobs")
B_PIDS=$(timeout 30 "$PM2" jlist | python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin)))")
B_RSS=$(sum_rss_mb $B_PIDS)

ratio() { python3 -c "print(round($1/max($2,1),2))"; }
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); wrk -t2 -c100 -d$DUR, 2 worker processes each"
echo
echo "| test | requests/s | p50 ms | p99 ms | errors | RSS per worker, MB |"
echo "|---|---|---|---|---|---|"
echo "| clusterd worker GET /health | $(j "$CGET" rps) | $(j "$CGET" p50_ms) | $(j "$CGET" p99_ms) | $(errs "$CGET") | $C_RSS_GET |"
echo "| nginx return 200 | $(j "$NGINX" rps) | $(j "$NGINX" p50_ms) | $(j "$NGINX" p99_ms) | $(errs "$NGINX") | $NGINX_RSS |"
echo "| Node http, PM2 cluster | $(j "$PM2GET" rps) | $(j "$PM2GET" p50_ms) | $(j "$PM2GET" p99_ms) | $(errs "$PM2GET") | $PM2_RSS |"
echo "| clusterd POST /v1/queues/q/jobs | $(j "$CPOST" rps) | $(j "$CPOST" p50_ms) | $(j "$CPOST" p99_ms) | $(errs "$CPOST") | $C_RSS_POST |"
echo "| BullMQ Queue.add behind Node http, PM2 cluster | $(j "$BPOST" rps) | $(j "$BPOST" p50_ms) | $(j "$BPOST" p99_ms) | $(errs "$BPOST") | $B_RSS |"
echo
echo "GET /health vs nginx: $(ratio "$(j "$CGET" rps)" "$(j "$NGINX" rps)")x (target >= 0.9)"
echo "GET /health vs Node/PM2: $(ratio "$(j "$CGET" rps)" "$(j "$PM2GET" rps)")x (target >= 2.5)"
echo "POST jobs vs BullMQ endpoint: $(ratio "$(j "$CPOST" rps)" "$(j "$BPOST" rps)")x"
echo "jobs in Redis after the clusterd POST run: $C_JOBS"
