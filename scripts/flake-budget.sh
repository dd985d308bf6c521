#!/usr/bin/env bash
# The flake budget: the whole suite (`npm test`) 5 times in a row; runs 2
# and 4 with two busy loops eating CPU. Every run must pass. Bounded: each
# run is cut after KT_FLAKE_RUN_TIMEOUT seconds (default 1200), the busy
# loops live only as long as their run.
#   npm run flake-budget            (or: scripts/flake-budget.sh [RUNS])
# Logs: $KT_FLAKE_DIR (default /tmp/kind-tunnel-flake-budget)/run-N.log
# KT_FLAKE_CMD replaces the command run each time (default: npm test).
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
limit=${KT_FLAKE_RUN_TIMEOUT:-1200}
dir=${KT_FLAKE_DIR:-/tmp/kind-tunnel-flake-budget}
cmd=${KT_FLAKE_CMD:-npm test}
mkdir -p "$dir"
summary=()
failures=0
busy_pids=()

stop_busy () {
  for p in "${busy_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${busy_pids[@]}"; do wait "$p" 2>/dev/null; done
  busy_pids=()
}
trap stop_busy EXIT

for i in $(seq 1 "$runs"); do
  load="idle"
  if [ "$i" = 2 ] || [ "$i" = 4 ]; then
    load="2 busy loops"
    for _ in 1 2; do
      timeout "$limit" sh -c 'while :; do :; done' &
      busy_pids+=($!)
    done
  fi
  start=$(date +%s)
  timeout --kill-after=30 "$limit" bash -c "$cmd" >"$dir/run-$i.log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  stop_busy
  failed=$(grep -E '^not ok [0-9]+ - ' "$dir/run-$i.log" | sed -E 's/^not ok [0-9]+ - ([^ ]+).*/\1/' | sort -u | tr '\n' ' ')
  [ "$rc" = 0 ] || failures=$((failures + 1))
  line=$(printf 'run %d  %-13s  %s  %4ds  exit %d  %s' "$i" "$load" "$( [ "$rc" = 0 ] && echo pass || echo FAIL )" "$took" "$rc" "$failed")
  summary+=("$line")
  echo "$line"
done

echo
echo "flake budget: $runs runs, $failures failed (logs in $dir)"
for l in "${summary[@]}"; do echo "  $l"; done
echo "slowest files of run 1:"
node scripts/test-times.mjs --top 10 "$dir/run-1.log" | sed 's/^/  /'
[ "$failures" = 0 ]
