#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that take untrusted bytes: the load generator's
# HTTP/1.1 response reader, the Toxiproxy-compatible API's request bodies, profiles with
# --set overrides, the region's checkout bodies and `.hlog` files for `rig report --merge`.
# Each target (fuzz/fuzz_targets) calls a crate's `fuzzing` entry point under libFuzzer,
# built on the stable toolchain with LLVM's SanitizerCoverage (no sanitizer runtime: a
# finding is a panic, a hang over 10 s, or more than 2 GiB resident).
#
#   bash bench/fuzz.sh                    # every target for 600 s, two at a time
#   bash bench/fuzz.sh 60 profile         # one target for a minute
#   JOBS=1 bash bench/fuzz.sh 300         # one target at a time
#
# Prints one line per target: executions, executions per second, coverage (`cov`: edges
# reached; `ft`: features), corpus size after minimising, and findings. New corpus inputs
# are kept in fuzz/corpus/<target> (commit them); a finding's input is written to
# fuzz/artifacts/<target>/ and, once fixed, belongs in fuzz/regressions/<target>/, which
# `cargo test` replays (crates/rig/tests/fuzz_inputs.rs). Exits 1 if anything was found.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
targets="${*:-http_response toxiproxy_api profile checkout_body hlog_merge}"
jobs="${JOBS:-2}"

host="$(rustc -vV | sed -n 's/^host: //p')"
# With --target, RUSTFLAGS reach the fuzzed code but not build scripts or proc macros.
# Overflow checks and debug assertions are set per crate in fuzz/Cargo.toml.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
echo "building the fuzz targets (release, instrumented)..." >&2
cargo build --release --quiet --manifest-path fuzz/Cargo.toml --target "$host" --bins
bin="fuzz/target/$host/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Longest input per target: past each parser's own bounds, small enough to stay fast.
max_len() {
  case "$1" in
    http_response) echo 20000 ;;   # past the 16 KiB head buffer
    hlog_merge) echo 65536 ;;
    profile) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

fuzz_one() {
  local target="$1" log="$work/$1.log"
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=("-dict=fuzz/dict/$target.dict")
  set +e
  "$bin/$target" "fuzz/corpus/$target" "${dict[@]}" \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1
  echo $? >"$work/$target.code"
  set -e
  # Keep a minimal corpus with the same coverage.
  mkdir -p "$work/$target.min"
  "$bin/$target" -merge=1 "$work/$target.min" "fuzz/corpus/$target" >"$work/$target.merge" 2>&1 &&
    rm -rf "fuzz/corpus/$target" && mv "$work/$target.min" "fuzz/corpus/$target"
}

running=0
for target in $targets; do
  [ -x "$bin/$target" ] || { echo "unknown target $target; the targets are in fuzz/fuzz_targets" >&2; exit 2; }
  echo "fuzzing $target for ${seconds}s..." >&2
  fuzz_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

# (A grep that finds nothing is not an error in the report.)
set +o pipefail
printf '%-14s %8s %12s %9s %7s %7s %7s  %s\n' target seconds executions 'exec/s' cov ft corpus findings
found=0
for target in $targets; do
  log="$work/$target.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
  findings=$(grep -oE '(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+' "$log" | sort -u | tr '\n' ' ')
  if [ "$(cat "$work/$target.code")" != 0 ] && [ -z "$findings" ]; then
    findings="exit $(cat "$work/$target.code") (see the log below)"
  fi
  printf '%-14s %8s %12s %9s %7s %7s %7s  %s\n' "$target" "$seconds" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "$corpus" "${findings:-none}"
  if [ -n "$findings" ]; then
    found=1
    echo "--- $target: the end of its log" >&2
    tail -40 "$log" >&2
  fi
done
exit "$found"
