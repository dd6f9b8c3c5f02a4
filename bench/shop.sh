#!/usr/bin/env bash
# Checkout load on the demo shop stack: ecosystem/shop.yaml started by the
# master in a temporary clusterd home on bench ports (Redis, PostgreSQL with
# its default durable settings, shop-api x2 in cluster mode, shop-jobs), then
# CONNS concurrent wrk clients POSTing /v1/orders for DURATION seconds.
# Reports API latency (p50/p95/p99) at LOW_CONNS clients (not saturated)
# and at CONNS clients, orders processed per second end to end, queue lag
# (order created -> processed, p50/p99, and the deepest orders backlog seen),
# orders per order.process transaction, PostgreSQL commits per order, the
# email lag (order created -> email in the maildir) and the CPU each part of
# the stack used during the main run.
#   bench/shop.sh                          # 10 clients for 5 s, then 200 for 20 s
#   CONNS=100 DURATION=10 bench/shop.sh
# Customers are @bench.example: the demo throttles mail to example.com to
# 600 a minute per worker (ecosystem/shop.yaml), which would measure the
# throttle rather than the email.batch scheduling.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/build/cli/clusterd}"
CONNS="${CONNS:-200}" DURATION="${DURATION:-20}" LOW_CONNS="${LOW_CONNS:-10}" LOW_DURATION="${LOW_DURATION:-5}"
SKUS="${SKUS:-1000}" STOCK="${STOCK:-1000000}"
export SHOP_REDIS_PORT="${SHOP_REDIS_PORT:-6491}" SHOP_PG_PORT="${SHOP_PG_PORT:-5491}"
export SHOP_HTTP_PORT="${SHOP_HTTP_PORT:-8491}" SHOP_JOBS_HTTP_PORT="${SHOP_JOBS_HTTP_PORT:-8492}"
export SHOP_CHECKOUT_LIMIT=1000000  # the demo's per-IP checkout limit would throttle wrk
for tool in wrk psql curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 111; }
done
[[ -x $BIN ]] || { echo "build clusterd first: $BIN is missing" >&2; exit 111; }

TMP=$(mktemp -d /tmp/clusterd-shopbench.XXXXXX)
export CLUSTERD_HOME="$TMP/home"
mkdir -p "$CLUSTERD_HOME/redis" "$CLUSTERD_HOME/mail"
export SHOP_PG_DATA="$TMP/pg/data"
mkdir -p "$SHOP_PG_DATA"
if [[ $(id -u) -eq 0 ]]; then
  export SHOP_PG_USER=postgres
  chmod 755 "$TMP"
  chown -R postgres:postgres "$TMP/pg"
  chmod 700 "$SHOP_PG_DATA"
fi
cleanup() {
  "$BIN" kill >/dev/null 2>&1 || true
  if [[ -n ${KEEP:-} ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
ECO="$ROOT/ecosystem/shop.yaml"
"$BIN" start "$ECO" >/dev/null
PG="postgresql://postgres@127.0.0.1:$SHOP_PG_PORT/postgres"
REDIS="redis://127.0.0.1:$SHOP_REDIS_PORT"
for i in $(seq 120); do
  "$BIN" db migrate --ecosystem "$ECO" >/dev/null 2>&1 && break
  [[ $i -eq 120 ]] && { "$BIN" db migrate --ecosystem "$ECO"; exit 111; }
  sleep 0.5
done
"$BIN" db seed --products "$SKUS" --stock "$STOCK" --postgres "$PG" >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SHOP_HTTP_PORT/health" >/dev/null && break; sleep 0.1; done
sleep 1

q() { psql "$PG" -Atc "$1"; }
drain() {  # waits (bounded) until no order is pending
  for _ in $(seq 600); do
    [[ $(q "select count(*) from orders where status = 'pending'") == 0 ]] && break
    sleep 0.2
  done
}
val() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  $(nproc) cores  load average $(cut -d' ' -f1 /proc/loadavg)  clients=$LOW_CONNS then $CONNS  duration=${LOW_DURATION}s then ${DURATION}s  stack: ecosystem/shop.yaml"
# Not saturated: few clients, so latency is the request's own cost.
SHOP_SKUS=$SKUS wrk -t1 -c"$LOW_CONNS" -d"${LOW_DURATION}s" -s "$ROOT/bench/shop_post.lua" \
  "http://127.0.0.1:$SHOP_HTTP_PORT" >"$TMP/wrk-low.txt" 2>&1
LOW=$(grep SHOP_RESULT "$TMP/wrk-low.txt" || { cat "$TMP/wrk-low.txt"; exit 1; })
drain

XACT0=$(q "select xact_commit from pg_stat_database where datname = 'postgres'")
ORDERS0=$(q "select coalesce(max(id), 0) from orders")

# Sample the orders backlog once a second while the load runs.
(
  max=0
  while sleep 1; do
    j=$("$BIN" --redis "$REDIS" queues --json 2>/dev/null | python3 -c 'import json,sys
try:
  print(max([q["waiting"] for q in json.load(sys.stdin) if q["queue"]=="orders"] or [0]))
except Exception: print(0)' 2>/dev/null)
    [[ ${j:-0} -gt $max ]] && max=$j
    echo "$max" >"$TMP/backlog"
  done
) &
SAMPLER=$!

# CPU of the stack's processes, and wrk's own (the children this shell waited for).
children_cpu() { awk -v t="$(getconf CLK_TCK)" '{ print ($16 + $17) / t }' "/proc/$$/stat"; }
python3 "$ROOT/bench/shop_cpu.py" snapshot "$CLUSTERD_HOME" "$TMP/cpu0.json"
WRK0=$(children_cpu)
SHOP_SKUS=$SKUS wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$ROOT/bench/shop_post.lua" \
  "http://127.0.0.1:$SHOP_HTTP_PORT" >"$TMP/wrk.txt" 2>&1
WRK1=$(children_cpu)
python3 "$ROOT/bench/shop_cpu.py" snapshot "$CLUSTERD_HOME" "$TMP/cpu1.json"
CPU="$(python3 "$ROOT/bench/shop_cpu.py" diff "$TMP/cpu0.json" "$TMP/cpu1.json" "$DURATION"); wrk $(python3 -c "print(f'{($WRK1 - $WRK0) / $DURATION:.2f}')")"
# Where checkouts spent their time, averaged over both runs, from one shop-api
# worker's /metrics (the one that answers).
PHASES=$(curl -s "http://127.0.0.1:$SHOP_HTTP_PORT/metrics" | python3 -c 'import sys
m = {}
for line in sys.stdin:
  if line.startswith("clusterd_shop_checkout"):
    k, v = line.rsplit(" ", 1); m[k] = float(v)
n = m.get("clusterd_shop_checkouts_timed_total", 0) or 1
print("insert %.1f ms, enqueue %.1f ms" % (1000 * m.get("clusterd_shop_checkout_seconds_total{phase=\"insert\"}", 0) / n,
      1000 * m.get("clusterd_shop_checkout_seconds_total{phase=\"enqueue\"}", 0) / n))')
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
RESULT=$(grep SHOP_RESULT "$TMP/wrk.txt" || { cat "$TMP/wrk.txt"; exit 1; })

# Let the queue drain (bounded), then measure from the database.
drain
XACT1=$(q "select xact_commit from pg_stat_database where datname = 'postgres'")
read -r ORDERS PENDING SPAN LAG50 LAG99 NGROUPS <<<"$(q "select count(*), count(*) filter (where status = 'pending'),
  extract(epoch from max(processed_at) - min(created_at)),
  1000 * extract(epoch from percentile_cont(0.5) within group (order by processed_at - created_at)),
  1000 * extract(epoch from percentile_cont(0.99) within group (order by processed_at - created_at)),
  count(distinct processed_at)
  from orders where id > $ORDERS0" | tr '|' ' ')"
for _ in $(seq 600); do
  [[ $(q "select count(*) from email_outbox where status = 'pending'") == 0 ]] && break
  sleep 0.2
done
# Email lag: the order's creation to its file in the maildir (sent_at is
# set in the COMMIT after the files are linked).
read -r EMAILS MAILSPAN MLAG50 MLAG99 MPEND <<<"$(q "select count(*) filter (where e.status = 'sent'),
  extract(epoch from max(e.sent_at) - min(o.created_at)),
  1000 * extract(epoch from percentile_cont(0.5) within group (order by e.sent_at - o.created_at)),
  1000 * extract(epoch from percentile_cont(0.99) within group (order by e.sent_at - o.created_at)),
  count(*) filter (where e.status <> 'sent')
  from email_outbox e join orders o on o.id = e.order_id where o.id > $ORDERS0" | tr '|' ' ')"
python3 - <<PY
requests, duration = $(val requests "$RESULT"), $(val duration_s "$RESULT")
orders, pending, span = $ORDERS, $PENDING, ${SPAN:-0}
xacts = $XACT1 - $XACT0
groups = ${NGROUPS:-0}
print()
print("| metric | value | target |")
print("|---|---|---|")
print(f"| POST /v1/orders p50 / p95 / p99, $LOW_CONNS clients | $(val p50_ms "$LOW") / $(val p95_ms "$LOW") / $(val p99_ms "$LOW") ms ({$(val requests "$LOW") / $(val duration_s "$LOW"):.0f} requests/s) | |")
print(f"| POST /v1/orders p50 / p95 / p99, $CONNS clients | $(val p50_ms "$RESULT") / $(val p95_ms "$RESULT") / $(val p99_ms "$RESULT") ms | p99 < 20 ms |")
print(f"| API requests/s, $CONNS clients | {requests / duration:.0f} (errors $(val errors "$RESULT")) | |")
print(f"| checkout time in the API worker, mean | $PHASES | |")
print(f"| orders processed/s end to end | {(orders - pending) / span if span else 0:.0f} ({orders - pending} orders in {span:.1f} s) | >= 1000 |")
print(f"| queue lag created -> processed p50 / p99 | {float('${LAG50:-0}'):.0f} / {float('${LAG99:-0}'):.0f} ms | |")
print(f"| deepest orders backlog seen | $(cat "$TMP/backlog" 2>/dev/null || echo 0) jobs | |")
print(f"| orders per order.process transaction | {(orders - pending) / groups if groups else 0:.1f} | |")
print(f"| PostgreSQL commits per order | {xacts / orders if orders else 0:.2f} | |")
print(f"| confirmation emails in the maildir | $EMAILS ({$EMAILS / float('${MAILSPAN:-0}' or 1):.0f}/s), $MPEND not sent | one per confirmed order |")
print(f"| email lag, order created -> email in the maildir, p50 / p99 | {float('${MLAG50:-0}' or 0):.0f} / {float('${MLAG99:-0}' or 0):.0f} ms | |")
print(f"| CPU during the {duration:.0f} s run (cores) | $CPU | |")
PY
