#!/usr/bin/env bash
# False verdicts across seeds: every profile under seeds 1..N on the correct reference
# system, long profiles shortened with --set. A correct system must pass every run: a FAIL
# is a false alarm of the verdict (or a real bug to chase), and its dossiers are printed.
#
#   bash bench/seeds.sh 5                         # every profile, seeds 1..5 (about an hour)
#   bash bench/seeds.sh 2                         # seeds 1..2
#   PROFILES="quickstart overload" bash bench/seeds.sh 3
#   FULL_SOAK=1 PROFILES=soak bash bench/seeds.sh 1  # the soak as written (30 minutes)
#   KEEP=DIR bash bench/seeds.sh 5                # keep every run's directory under DIR
#   FROM=4 PROFILES=overload bash bench/seeds.sh 5  # seeds 4..5 only
#
# The soak is shortened to 5 minutes with its partition, crash and freeze moved inside them
# (its later spikes and partitions never run: --allow-chaos-after-load). Prints a line per
# run as it ends, then a table of profile x seed x verdict. Failed runs' directories are
# always kept (the path is printed). Runs one at a time: the runs are timing-sensitive, and
# two at once would share the 2 cores. Exits 1 if any run did not pass.
set -euo pipefail
cd "$(dirname "$0")/.."

n="${1:-5}"
case "$n" in '' | *[!0-9]* | 0) echo "usage: bash bench/seeds.sh [N]  (N: seeds 1..N, a positive integer; got '$n')" >&2; exit 2 ;; esac
profiles="${PROFILES:-$(cd profiles && ls -1 ./*.toml | sed 's|^\./||; s|\.toml$||' | tr '\n' ' ')}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
runs_dir="${KEEP:-$work/runs}"
failed_dir="${FAILED_DIR:-target/seeds-failed}"
mkdir -p "$runs_dir"

# Extra flags that shorten a long profile.
shorten() {
  case "$1" in
    soak)
      [ -n "${FULL_SOAK:-}" ] && return
      # Windows 1, 3 and 4 are the first partition, the crash of region a and the provider
      # freeze; window 0 (the first spike, at 4m) stays where it is.
      echo "--set workload.phases.0.for=5m --set chaos.1.at=90s --set chaos.3.at=150s" \
        "--set chaos.4.at=195s --allow-chaos-after-load"
      ;;
  esac
}

echo "building rig (release)..." >&2
cargo build --release -q
# A copy, so a rebuild while a long sweep runs cannot change the binary under it.
cp target/release/rig "$work/rig"
rig="$work/rig"

printf '%-18s %5s %-8s %8s  %s\n' profile seed verdict seconds "not passing"
: >"$work/table"
runs=0
passed=0
for profile in $profiles; do
  [ -f "profiles/$profile.toml" ] || { echo "no profile profiles/$profile.toml" >&2; exit 2; }
  for seed in $(seq "${FROM:-1}" "$n"); do
    out="$runs_dir/$profile-$seed"
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2046
    "$rig" run "profiles/$profile.toml" --seed "$seed" --out "$out" $(shorten "$profile") >"$work/log" 2>&1
    code=$?
    set -e
    took=$(($(date +%s) - start))
    verdict=$(case $code in 0) echo PASS ;; 1) echo FAIL ;; *) echo "EXIT-$code" ;; esac)
    others=$( (grep -E '^[a-z-]+ +(FAIL|UNKNOWN) ' "$work/log" || true) | awk '{print $1"="$2}' | tr '\n' ' ')
    thresholds=$( (grep -E '^  FAIL ' "$work/log" || true) | sed 's/^  FAIL  *//' | tr '\n' ';')
    printf '%-18s %5s %-8s %8s  %s\n' "$profile" "$seed" "$verdict" "$took" "$others$thresholds"
    echo "$profile $seed $verdict" >>"$work/table"
    runs=$((runs + 1))
    if [ "$code" = 0 ]; then
      passed=$((passed + 1))
    else
      mkdir -p "$failed_dir"
      kept="$failed_dir/$profile-$seed-$(date +%s)"
      [ -d "$out" ] && cp -r "$out" "$kept"
      cp "$work/log" "$kept.log"
      echo "--- $profile seed $seed: $verdict; run directory kept in $kept, its output in $kept.log" >&2
      tail -25 "$work/log" >&2
      if [ -f "$out/verdict.json" ]; then
        # (Printing the dossiers never stops the sweep.)
        python3 - "$out/verdict.json" >&2 <<'PY' || true
import json, sys
verdict = json.load(open(sys.argv[1]))
for v in verdict["verdicts"]:
    if v["status"] == "pass":
        continue
    print(f"{v['invariant']}: {v['status']}: {v['summary']} {v.get('reason', '')}")
    for d in v["dossiers"][:2]:
        print(f"  order {d['order_id']}: {d['narrative']}")
        rows = d["rows"]
        for row in (rows[:8] if isinstance(rows, list) else [rows]):
            print(f"    {json.dumps(row)[:200]}")
PY
      fi
    fi
  done
done

echo
python3 - "$work/table" "$n" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    profile, seed, verdict = line.split()
    rows.setdefault(profile, {})[int(seed)] = verdict
seeds = range(1, int(sys.argv[2]) + 1)
print(f"{'profile x seed':<18}" + "".join(f"{s:>8}" for s in seeds))
for profile, verdicts in rows.items():
    print(f"{profile:<18}" + "".join(f"{verdicts.get(s, '-'):>8}" for s in seeds))
PY
echo "$passed of $runs runs passed; $((runs - passed)) false verdicts"
[ "$passed" = "$runs" ]
