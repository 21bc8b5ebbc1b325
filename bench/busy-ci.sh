#!/usr/bin/env bash
# The test suite on a busy machine: the README's test command while another process keeps
# one core busy (a plain busy loop pinned to core 0 when taskset is there), RUNS times in a
# row. Prints one line per run (passed, failed, minutes) and exits non-zero if any run
# failed. CI machines are noisy; a behavioural time bound must hold here too.
#
#   bash bench/busy-ci.sh            # 3 runs
#   RUNS=1 bash bench/busy-ci.sh
#
# Needs what .ci/run needs (PostgreSQL for TEST_DATABASE_URL, the conformance tools); run
# `bash .ci/run` once first so they are installed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
export CI="${CI:-true}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rig_test}"
export RIG_CONFORMANCE_CACHE="${RIG_CONFORMANCE_CACHE:-$HOME/.cache/rig-conformance}"
test_cmd=$(sed -n '/<!-- test-command -->/,/<!-- \/test-command -->/p' README.md | grep -E '^(cargo|bash|\./)' | head -n 1)
work="$(mktemp -d)"
busy_pid=""
cleanup() {
  if [ -n "$busy_pid" ]; then kill "$busy_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "building the tests first (not timed, not busy)..." >&2
eval "$test_cmd --no-run" >/dev/null 2>&1

# One core kept busy for the whole run.
if command -v taskset >/dev/null 2>&1; then
  taskset -c 0 bash -c 'while :; do :; done' &
else
  bash -c 'while :; do :; done' &
fi
busy_pid=$!

failed_runs=0
for i in $(seq 1 "$runs"); do
  psql -h 127.0.0.1 -U postgres -d postgres -qAt \
    -c "DROP DATABASE IF EXISTS rig_test WITH (FORCE)" -c "CREATE DATABASE rig_test" >/dev/null
  start=$(date +%s)
  set +e
  eval "$test_cmd" >"$work/log" 2>&1
  code=$?
  set -e
  took=$(( $(date +%s) - start ))
  passed=$(grep -E '^test result' "$work/log" | awk '{s+=$4} END {print s+0}')
  failed=$(grep -E '^test result' "$work/log" | awk '{s+=$6} END {print s+0}')
  printf 'run %d: exit %d, %d passed, %d failed, %dm%02ds with one core busy\n' \
    "$i" "$code" "$passed" "$failed" $((took / 60)) $((took % 60))
  if [ "$code" != 0 ]; then
    failed_runs=$((failed_runs + 1))
    # Each failing test with its message (the lines after the panic).
    grep -E -A4 -- 'panicked at' "$work/log" | head -40
  fi
done
echo "$((runs - failed_runs)) of $runs runs passed"
[ "$failed_runs" = 0 ]
