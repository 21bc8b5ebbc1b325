#!/usr/bin/env bash
# Benchmark of the checkout workload (not a test): the highest arrival rate
# `rig load --workload checkout` sustains with the client history on (a SQLite file),
# against a stub region that answers every checkout `201 order_confirmed` at once
# (crates/loadgen/examples/checkout_stub.rs), and its peak RSS.
#
# The stub runs on core 0; rig (generator, history writer and SQLite, all of it) on core 1.
# "Sustained": achieved >= 99 % of the target rate, nothing dropped, one history row per
# arrival, latency p99 <= 10 ms (from the intended send time). For context it also prints
# what the generic `rig load` holds against the same stub on the same core, since other
# work on the machine moves every figure.
#
# Needs two cores, taskset, jq and GNU time (/usr/bin/time). Traffic stays on 127.0.0.1;
# everything it starts stops with it.
#
#   bash bench/checkout_workload.sh                  # 10 s per probe
#   PROBE_SECONDS=20 bash bench/checkout_workload.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROBE_SECONDS=${PROBE_SECONDS:-10}
PORT=${PORT:-18181}
URL="http://127.0.0.1:$PORT"
STUB_CORE=0
TOOL_CORE=1
P99_MS=10
WORK=$(mktemp -d)
STUB_PID=""

cleanup() {
  if [ -n "$STUB_PID" ]; then kill "$STUB_PID" 2>/dev/null || true; wait "$STUB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }

for tool in taskset jq /usr/bin/time; do
  command -v "$tool" >/dev/null || { say "bench: needs $tool"; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then say "bench: needs at least 2 cores"; exit 1; fi

say "bench: building rig and the stub (release)"
cargo build --release -p rig >/dev/null 2>&1
cargo build --release -p loadgen --example checkout_stub >/dev/null 2>&1

taskset -c "$STUB_CORE" target/release/examples/checkout_stub "127.0.0.1:$PORT" >"$WORK/stub.out" &
STUB_PID=$!
for _ in $(seq 1 50); do
  grep -q listening "$WORK/stub.out" 2>/dev/null && break
  sleep 0.1
done
grep -q listening "$WORK/stub.out" || { say "bench: the stub did not start"; exit 1; }

# checkout_probe RATE SECONDS -> "achieved p99_ms lag_p99_ms dropped rows scheduled rss_mb"
checkout_probe() {
  local rate=$1 seconds=$2 json="$WORK/c-$1.json" db="$WORK/h-$1.db"
  rm -f "$db" "$db-wal" "$db-shm"
  /usr/bin/time -f '%M' -o "$WORK/rss" taskset -c "$TOOL_CORE" target/release/rig load \
    --workload checkout --target "$URL" --rate "$rate" --duration "${seconds}s" \
    --skus sku-1,sku-2,sku-3 --run-tag "b$rate" --history "$db" --json "$json" \
    --progress off >/dev/null 2>&1 || true
  jq -r --arg rss "$(awk '{ printf "%.1f", $1 / 1024 }' "$WORK/rss")" \
    '[.totals.achieved_rate, (.latency_seconds.p99 // 0) * 1000,
      (.generator_lag_seconds.p99 // 0) * 1000, .totals.dropped,
      .run.workload.history.arrivals_written, .totals.scheduled, $rss] | @tsv' "$json"
}

# generic_probe RATE SECONDS -> "achieved p99_ms"
generic_probe() {
  local rate=$1 seconds=$2 json="$WORK/g-$1.json"
  taskset -c "$TOOL_CORE" target/release/rig load "$URL/v1/checkout" --method POST \
    --rate "$rate" --duration "${seconds}s" --connections 50 --progress off --json "$json" \
    >/dev/null 2>&1 || true
  jq -r '[.totals.achieved_rate, (.latency_seconds.p99 // 0) * 1000] | @tsv' "$json"
}

held() { # achieved p99_ms dropped rows scheduled target -> 0 if sustained
  awk -v a="$1" -v p="$2" -v d="$3" -v w="$4" -v s="$5" -v r="$6" -v bound="$P99_MS" \
    'BEGIN { exit !(a >= 0.99 * r && p <= bound && d == 0 && w == s) }'
}

say "bench: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); stub on core $STUB_CORE, rig on core $TOOL_CORE, ${PROBE_SECONDS}s probes"

best=0; best_line=""; misses=0
for rate in 5000 10000 15000 20000 25000 30000 35000 40000 50000 60000 70000 80000; do
  line=$(checkout_probe "$rate" "$PROBE_SECONDS")
  read -r achieved p99 lag dropped rows scheduled rss <<<"$line"
  verdict="not held"
  if held "$achieved" "$p99" "$dropped" "$rows" "$scheduled" "$rate"; then
    verdict="held"; best=$rate; best_line=$line; misses=0
  else
    misses=$((misses + 1))
  fi
  printf '  checkout target %6d/s: achieved %8.0f/s  p99 %8.2f ms  lag p99 %7.3f ms  dropped %7d  history %7d/%-7d  peak RSS %6s MB  %s\n' \
    "$rate" "$achieved" "$p99" "$lag" "$dropped" "$rows" "$scheduled" "$rss" "$verdict"
  [ "$misses" -ge 2 ] && break
done

# Memory over a longer run at the held rate: bounded means flat.
samples=""
if [ "$best" -gt 0 ]; then
  taskset -c "$TOOL_CORE" target/release/rig load --workload checkout --target "$URL" \
    --rate "$best" --duration 60s --skus sku-1,sku-2,sku-3 --run-tag long \
    --history "$WORK/long.db" --progress off >/dev/null 2>"$WORK/long.err" &
  pid=$!
  for _ in $(seq 1 12); do
    sleep 5
    rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] || break
    samples="$samples $rss"
  done
  wait "$pid" || say "bench: the 60 s run failed: $(tail -2 "$WORK/long.err")"
fi

generic_best=0
for rate in 20000 40000 60000; do
  line=$(generic_probe "$rate" "$PROBE_SECONDS")
  read -r achieved p99 <<<"$line"
  if awk -v a="$achieved" -v p="$p99" -v r="$rate" -v bound="$P99_MS" 'BEGIN { exit !(a >= 0.99 * r && p <= bound) }'; then
    generic_best=$rate
  fi
done

say ""
say "== rig load --workload checkout benchmark =="
if [ "$best" -gt 0 ]; then
  read -r achieved p99 lag dropped rows scheduled rss <<<"$best_line"
  say "highest sustained rate with history on:  $best arrivals/s (achieved $(printf '%.0f' "$achieved")/s, p99 $(printf '%.2f' "$p99") ms, generator lag p99 $(printf '%.3f' "$lag") ms, $rows/$scheduled history rows; target >= 20000)"
  say "peak RSS at that rate:                   $rss MB"
  say "RSS every 5 s over 60 s at that rate:   $samples MB"
else
  say "highest sustained rate with history on:  none of the probes held"
fi
say "generic rig load, same stub and core:    held $generic_best req/s of 20k/40k/60k probes (context: the machine's capacity now)"
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
