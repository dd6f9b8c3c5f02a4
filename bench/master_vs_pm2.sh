#!/usr/bin/env bash
# Master benchmarks, clusterd vs PM2 (and nginx) in one run; prints a table
# with ratios. Needs a built tree (build/), node, wrk, hyperfine, nginx and
# PM2 (PM2=path/to/pm2, default the peers' node_modules or /tmp/pm2peer).
#   bench/master_vs_pm2.sh            # REPS=5 kills per side
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
PEERS="${PEERS:-/work/shared/peers}"
if [[ -z "${PM2:-}" ]]; then
  for c in "$PEERS/node_modules/.bin/pm2" /tmp/pm2peer/node_modules/.bin/pm2; do
    [[ -x $c ]] && PM2=$c && break
  done
fi
[[ -n "${PM2:-}" ]] || { echo "PM2 not found: cd $PEERS && npm ci, or set PM2=" >&2; exit 111; }
for tool in node wrk hyperfine nginx python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 111; }
done
export CLUSTERD="$BUILD/cli/clusterd" PM2 PEERS
export TESTAPP="${TESTAPP:-$BUILD/tests/master/master_testapp}"
export NODE_PATH="$(cd "$(dirname "$PM2")/.." && pwd)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  pm2 $("$PM2" --version 2>/dev/null | tail -1)  node $(node --version)  $(nproc) cores"
exec python3 "$ROOT/bench/master_bench.py"
