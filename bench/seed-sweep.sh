#!/usr/bin/env bash
# False alarms across seeds: every profile, each seed, on the correct reference system; one
# line per run with its verdict and the invariants that did not pass. A correct system must
# pass every run: a FAIL here is a false alarm of the verdict (or a real bug to chase).
#
#   bash bench/seed-sweep.sh                      # profiles except soak, seeds 1..5
#   SEEDS="1 2 3" PROFILES="quickstart overload" bash bench/seed-sweep.sh
#   PROFILES=soak SEEDS=1 bash bench/seed-sweep.sh  # the 30-minute soak
#   KEEP=DIR bash bench/seed-sweep.sh             # keep each run's directory under DIR
#
# Runs sequentially (the runs are timing-sensitive; two at once would share the 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="${SEEDS:-1 2 3 4 5}"
profiles="${PROFILES:-quickstart payment-brownout region-partition retry-storm overload crash-recovery clock-skew}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
runs_dir="${KEEP:-$work}"
mkdir -p "$runs_dir"

echo "building rig (release)..." >&2
cargo build --release -q
# A copy, so a rebuild while a long sweep runs cannot change the binary under it.
cp target/release/rig "$work/rig"
rig="$work/rig"

printf '%-18s %5s %-8s %8s  %s\n' profile seed verdict seconds "not passing"
runs=0; passed=0
for profile in $profiles; do
  for seed in $seeds; do
    out="$runs_dir/$profile-$seed"
    start=$(date +%s)
    set +e
    "$rig" run "profiles/$profile.toml" --seed "$seed" --out "$out" >"$work/log" 2>&1
    code=$?
    set -e
    took=$(( $(date +%s) - start ))
    verdict=$(case $code in 0) echo PASS;; 1) echo FAIL;; *) echo "EXIT-$code";; esac)
    others=$( (grep -E '^[a-z-]+ +(FAIL|UNKNOWN) ' "$work/log" || true) | awk '{print $1"="$2}' | tr '\n' ' ')
    thresholds=$( (grep -E '^  FAIL ' "$work/log" || true) | sed 's/^  FAIL  *//' | tr '\n' ';')
    printf '%-18s %5s %-8s %8s  %s\n' "$profile" "$seed" "$verdict" "$took" "$others$thresholds"
    runs=$((runs + 1)); [ "$code" = 0 ] && passed=$((passed + 1))
  done
done
echo "$passed of $runs runs passed"
