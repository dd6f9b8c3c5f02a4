#!/usr/bin/env bash
# Worker HTTP benchmark, every system in the same run with 2 worker
# processes and `wrk -t2 -c100 -d$DUR --latency` (keep-alive):
#   1. GET /health of the built-in worker under the clusterd master
#      (Redis check cached for a second) vs nginx `return 200` (2 workers)
#      vs a Node http server under PM2 cluster mode (2 instances);
#   2. POST /v1/queues/q/jobs (one job per request) vs BullMQ's Queue.add
#      behind a plain Node http endpoint under PM2 cluster mode (2 instances).
# Prints requests/s (median of REPS interleaved rounds, and each round),
# p50/p99 latency, errors, worker RSS, the CPU time each request cost the
# server's processes and wrk, and the ratios.
#
# LAYOUT=shared (the default): servers and wrk share both cores, as in the
# peers' baselines, so a server's throughput also depends on how much CPU its
# requests leave to wrk. LAYOUT=split: the servers (and Redis) run on CPU 0
# and wrk on CPU 1, so each server's number is what one core of it serves.
#
#   bench/worker_vs_nginx.sh            (build first; peers need node_modules)
# Env: BUILD (./build), PEERS (/work/shared/peers; a copy with node_modules
# works, e.g. /tmp/worker-peers), DUR (10s), REPS (3), REDIS_PORT (6396),
# ports NGINX_PORT (8393), PM2_PORT (8394), BULL_PORT (8392), CLUSTERD_PORT (8395).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"; PEERS="${PEERS:-/work/shared/peers}"; DUR="${DUR:-10s}"
REDIS_PORT="${REDIS_PORT:-6396}"; NGINX_PORT="${NGINX_PORT:-8393}"
PM2_PORT="${PM2_PORT:-8394}"; CLUSTERD_PORT="${CLUSTERD_PORT:-8395}"; BULL_PORT="${BULL_PORT:-8392}"
REPS="${REPS:-3}"; LAYOUT="${LAYOUT:-shared}"
case $LAYOUT in
  shared) ON_SERVER_CPUS=(); ON_WRK_CPUS=() ;;
  split) ON_SERVER_CPUS=(taskset -c 0); ON_WRK_CPUS=(taskset -c 1) ;;
  *) echo "LAYOUT must be shared or split, not '$LAYOUT'" >&2; exit 2 ;;
esac
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
# cpu_ticks PID... -> user+system clock ticks those processes have used
cpu_ticks() { local t=0 f; for p in "$@"; do f=($(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null)) && t=$((t + f[11] + f[12])); done; echo $t; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
# run_wrk PIDS URL [SCRIPT] -> the report line {"rps":..,"p50_ms":..,...},
# with "server_us" (CPU per request of PIDS) and "wrk_us" (of wrk) added.
run_wrk() {
  local pids=$1 url=$2 script=${3:-$TMP/report.lua}
  timeout 10 "${ON_WRK_CPUS[@]}" wrk -t2 -c100 -d2s -s "$script" "$url" >/dev/null 2>&1 || true   # warm-up
  local before; before=$(cpu_ticks $pids)
  local TIMEFORMAT='%U %S'
  { time timeout 120 "${ON_WRK_CPUS[@]}" wrk -t2 -c100 -d"$DUR" --latency -s "$script" "$url" > "$TMP/wrk.out" 2>&1; } 2> "$TMP/wrk.time" || true
  local after; after=$(cpu_ticks $pids)
  sed -n 's/^WRKJSON //p' "$TMP/wrk.out" | python3 -c "
import json,sys
d=json.loads(sys.stdin.read()); n=max(d['requests'],1); u,s=map(float,open('$TMP/wrk.time').read().split())
d['server_us']=round(($after-$before)*$TICK_US/n,2); d['wrk_us']=round((u+s)*1e6/n,2); print(json.dumps(d))"
}
cp "$REPORT" "$TMP/report.lua"
cat "$ROOT/bench/worker_post.lua" "$REPORT" > "$TMP/post.lua"
"${ON_SERVER_CPUS[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP" --save '' --appendonly no --daemonize no --logfile "$TMP/redis.log" &
RPID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Every server runs for the whole benchmark (idle ones cost nothing) and the
# wrk runs alternate between them, REPS rounds in a rotating order, so a
# change in the machine's load hits every system alike; the median counts.

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
# In a session of its own, as the clusterd and PM2 daemons and their workers
# are: Linux's scheduler autogroups share the CPU between sessions first, so a
# server left in this script's session (with wrk) would be scheduled
# differently from the others (docs/BENCHMARKS.md, Master).
"${ON_SERVER_CPUS[@]}" setsid nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/"

# ---- Node http and the BullMQ endpoint under PM2 cluster mode, 2 instances each ----
PORT=$PM2_PORT timeout 60 "${ON_SERVER_CPUS[@]}" "$PM2" start "$PEERS/app/server.js" -i 2 --name web >/dev/null
(cd "$PEERS" && PORT=$BULL_PORT REDIS_PORT=$REDIS_PORT NODE_PATH="$PEERS/node_modules" timeout 60 "${ON_SERVER_CPUS[@]}" "$PM2" start "$ROOT/bench/worker_bullmq_endpoint.js" -i 2 --name bull >/dev/null)
wait_http "http://127.0.0.1:$PM2_PORT/"
for _ in $(seq 200); do [[ "$(curl -s -o /dev/null -w '%{http_code}' -XPOST -d '{"name":"x"}' "http://127.0.0.1:$BULL_PORT/v1/queues/w/jobs")" == 202 ]] && break; sleep 0.05; done

# ---- clusterd: built-in worker under the master, 2 instances ----
cat > "$TMP/eco.yaml" <<YAML
apps:
  - name: api
    script: builtin:worker
    exec_mode: cluster
    instances: 2
    listen: 127.0.0.1:$CLUSTERD_PORT
    wait_ready: true
    http:
      # The job API is off unless listed; on loopback it needs no token.
      job_api:
        queues:
          q: ["*"]
queue:
  redis_url: redis://127.0.0.1:$REDIS_PORT
YAML
timeout 60 "${ON_SERVER_CPUS[@]}" "$CLI" start "$TMP/eco.yaml" >/dev/null
wait_http "http://127.0.0.1:$CLUSTERD_PORT/health"; sleep 1

NGINX_PIDS=$(cat /proc/$NGINX_PID/task/*/children)
PM2_PIDS=$(timeout 30 "$PM2" jlist | python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin) if p['name']=='web'))")
B_PIDS=$(timeout 30 "$PM2" jlist | python3 -c "import json,sys; print(' '.join(str(p['pid']) for p in json.load(sys.stdin) if p['name']=='bull'))")
C_PIDS=$("$CLI" status --json | python3 -c "import json,sys; print(' '.join(str(w['pid']) for w in json.load(sys.stdin)))")

declare -A RUNS
get_run() { # name
  case $1 in
    nginx) run_wrk "$NGINX_PIDS" "http://127.0.0.1:$NGINX_PORT/" ;;
    node) run_wrk "$PM2_PIDS" "http://127.0.0.1:$PM2_PORT/" ;;
    clusterd) run_wrk "$C_PIDS" "http://127.0.0.1:$CLUSTERD_PORT/health" ;;
    cpost) redis-cli -p "$REDIS_PORT" flushall >/dev/null; run_wrk "$C_PIDS $RPID" "http://127.0.0.1:$CLUSTERD_PORT/v1/queues/q/jobs" "$TMP/post.lua" ;;
    bpost) redis-cli -p "$REDIS_PORT" flushall >/dev/null; run_wrk "$B_PIDS $RPID" "http://127.0.0.1:$BULL_PORT/v1/queues/q/jobs" "$TMP/post.lua" ;;
  esac
}
ORDER=(nginx node clusterd cpost bpost)
for r in $(seq "$REPS"); do
  for k in $(seq 0 4); do
    name=${ORDER[$(( (k + r - 1) % 5 ))]}
    log "round $r: $name"
    RUNS[$name]+="$(get_run "$name")"$'\n'
  done
done
NGINX_RSS=$(sum_rss_mb $NGINX_PIDS)
PM2_RSS=$(sum_rss_mb $PM2_PIDS); B_RSS=$(sum_rss_mb $B_PIDS); C_RSS=$(sum_rss_mb $C_PIDS)
# med NAME FIELD -> the median of FIELD over the rounds; all NAME -> every rps
med() { printf '%s' "${RUNS[$1]}" | python3 -c "import json,sys,statistics; v=[json.loads(l)['$2'] for l in sys.stdin if l.strip()]; print(round(statistics.median(v),3))"; }
errsum() { printf '%s' "${RUNS[$1]}" | python3 -c "import json,sys; print(sum(d['non2xx']+d['connect']+d['read']+d['write']+d['timeout'] for d in map(json.loads, filter(str.strip, sys.stdin))))"; }
all() { printf '%s' "${RUNS[$1]}" | python3 -c "import json,sys; print(' / '.join(str(round(json.loads(l)['rps'])) for l in sys.stdin if l.strip()))"; }
ratio() { python3 -c "print(round($1/max($2,1),2))"; }
row() { echo "| $1 | $(med "$2" rps) | $(all "$2") | $(med "$2" p50_ms) | $(med "$2" p99_ms) | $(errsum "$2") | $(med "$2" server_us) | $(med "$2" wrk_us) | $3 |"; }
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); wrk -t2 -c100 -d$DUR, 2 worker processes each, $REPS rounds (medians), layout $LAYOUT"
echo
echo "| test | requests/s | each round | p50 ms | p99 ms | errors | server CPU µs/request | wrk CPU µs/request | RSS per worker, MB |"
echo "|---|---|---|---|---|---|---|---|---|"
row "clusterd worker GET /health" clusterd "$C_RSS"
row "nginx return 200" nginx "$NGINX_RSS"
row "Node http, PM2 cluster" node "$PM2_RSS"
row "clusterd POST /v1/queues/q/jobs" cpost "$C_RSS"
row "BullMQ Queue.add behind Node http, PM2 cluster" bpost "$B_RSS"
echo
echo "GET /health vs nginx: $(ratio "$(med clusterd rps)" "$(med nginx rps)")x (target >= 0.9)"
echo "GET /health vs Node/PM2: $(ratio "$(med clusterd rps)" "$(med node rps)")x (target >= 2.5)"
echo "nginx vs Node/PM2 (for scale): $(ratio "$(med nginx rps)" "$(med node rps)")x"
echo "POST jobs vs BullMQ endpoint: $(ratio "$(med cpost rps)" "$(med bpost rps)")x"
echo "server CPU per request, Node/PM2 vs GET /health: $(ratio "$(med node server_us)" "$(med clusterd server_us)")x; nginx vs GET /health: $(ratio "$(med nginx server_us)" "$(med clusterd server_us)")x"
