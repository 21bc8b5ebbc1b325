#!/usr/bin/env bash
# Benchmark of `rig load` (not a test): nginx with one worker pinned to core 0, each load
# tool pinned to core 1, 50 connections, same endpoint, one after the other.
#
# Prints: wrk's closed-loop maximum (the better of two runs); the highest open-loop rate `rig
# load` holds (achieved >= 99 % of the target and p99 <= 5 ms, latency from the intended send
# time; a missed probe gets one more try, as every tool's does); the same for
# `oha -q R --latency-correction`; `rig load` at 100k rps; the generator's send jitter at a
# few rates; peak and per-5-second RSS of a 60 s run. Targets (from the loadgen issue):
# held rate >= 0.8 x wrk's max and >= 1.3 x oha's held rate; RSS <= 64 MB and flat.
#
# Needs two cores. Installs nginx-light and wrk (apt) and oha (cargo install, a long
# build) if they are missing. Sends traffic to 127.0.0.1 only, and stops by itself.
#
#   bash bench/loadgen.sh                  # 10 s per probe
#   PROBE_SECONDS=20 bash bench/loadgen.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PROBE_SECONDS=${PROBE_SECONDS:-10}
CONNECTIONS=50
PORT=${PORT:-18080}
URL="http://127.0.0.1:$PORT/"
SERVER_CORE=0
TOOL_CORE=1
WORK=$(mktemp -d)
NGINX_PID=""

cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }

ensure_tools() {
  if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v jq >/dev/null; then
    say "bench: installing nginx-light, wrk and jq"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk jq >/dev/null
  fi
  if ! command -v oha >/dev/null && [ ! -x "$HOME/.cargo/bin/oha" ]; then
    say "bench: installing oha (cargo install oha --locked; this takes a while)"
    cargo install oha --locked >/dev/null
  fi
  OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
  if [ "$(nproc)" -lt 2 ]; then say "bench: needs at least 2 cores"; exit 1; fi
}

start_nginx() {
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # Keep connections for the whole run, the same for every tool.
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
CONF
  taskset -c "$SERVER_CORE" nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" &
  NGINX_PID=$!
  for _ in $(seq 1 50); do
    if curl -fsS "$URL" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  say "bench: nginx did not start"; exit 1
}

# rig_probe RATE SECONDS -> "achieved p99_ms lag_p99_ms dropped"
rig_probe() {
  local rate=$1 seconds=$2 json="$WORK/rig-$1.json"
  taskset -c "$TOOL_CORE" target/release/rig load "$URL" --rate "$rate" --duration "${seconds}s" \
    --connections "$CONNECTIONS" --progress off --json "$json" >/dev/null 2>&1 || true
  jq -r '[.totals.achieved_rate, (.latency_seconds.p99 // 0) * 1000,
          (.generator_lag_seconds.p99 // 0) * 1000, .totals.dropped] | @tsv' "$json"
}

# oha_probe RATE SECONDS -> "achieved p99_ms"
oha_probe() {
  local rate=$1 seconds=$2 json="$WORK/oha-$1.json"
  taskset -c "$TOOL_CORE" "$OHA" -z "${seconds}s" -c "$CONNECTIONS" -q "$rate" --latency-correction \
    --no-tui --output-format json "$URL" >"$json" 2>/dev/null || true
  jq -r '[.summary.requestsPerSec, (.latencyPercentiles.p99 // 0) * 1000] | @tsv' "$json"
}

held() { # achieved p99_ms target -> 0 if held
  awk -v a="$1" -v p="$2" -v r="$3" 'BEGIN { exit !(a >= 0.99 * r && p <= 5.0) }'
}

# search TOOL MAX: tries 20 %, 30 %, ... of MAX, then 5 % steps from 50 %; stops after two
# missed rates in a row. A probe that misses is run once more, for every tool alike (printed
# both times): a stall of this shared machine inside a 10 s probe can push p99 past 5 ms at
# any rate near the limit, and one stall should not decide the figure.
search() {
  local tool=$1 max=$2 best=0 misses=0 pct rate line achieved p99 attempt ok
  for pct in 20 30 40 50 55 60 65 70 75 80 85 90 95 100; do
    rate=$(( max * pct / 100 / 1000 * 1000 ))
    ok=0
    for attempt in 1 2; do
      if [ "$tool" = rig ]; then line=$(rig_probe "$rate" "$PROBE_SECONDS"); else line=$(oha_probe "$rate" "$PROBE_SECONDS"); fi
      achieved=$(cut -f1 <<<"$line"); p99=$(cut -f2 <<<"$line")
      if held "$achieved" "$p99" "$rate"; then
        printf '  %-4s target %7d/s: achieved %9.0f/s  p99 %8.2f ms  held\n' "$tool" "$rate" "$achieved" "$p99" >&2
        ok=1
        break
      fi
      printf '  %-4s target %7d/s: achieved %9.0f/s  p99 %8.2f ms  not held (try %d of 2)\n' "$tool" "$rate" "$achieved" "$p99" "$attempt" >&2
    done
    if [ "$ok" = 1 ]; then
      best=$rate; misses=0
    else
      misses=$((misses + 1))
      [ "$misses" -ge 2 ] && break
    fi
  done
  echo "$best"
}

rss_run() { # 60 s at RATE: VmRSS every 5 s and the peak (VmHWM), in MB
  local rate=$1
  taskset -c "$TOOL_CORE" target/release/rig load "$URL" --rate "$rate" --duration 60s \
    --connections "$CONNECTIONS" --progress off --json "$WORK/rss.json" >/dev/null 2>&1 &
  local pid=$! samples="" peak=0
  for _ in $(seq 1 12); do
    sleep 5
    [ -r "/proc/$pid/status" ] || break
    samples="$samples $(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
    peak=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")
  done
  wait "$pid" || true
  echo "$peak|$samples"
}

ensure_tools
say "bench: building rig (release)"
cargo build --release -p rig >/dev/null 2>&1
start_nginx
say "bench: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); nginx 1 worker on core $SERVER_CORE, tools on core $TOOL_CORE, $CONNECTIONS connections, ${PROBE_SECONDS}s probes"

# wrk's maximum: the better of two runs (the same second chance the probes get).
wrk_max=0
for _ in 1 2; do
  run=$(taskset -c "$TOOL_CORE" wrk -t1 -c"$CONNECTIONS" -d"${PROBE_SECONDS}s" "$URL" | awk '/Requests\/sec/ { printf "%d", $2 }')
  say "  wrk  closed loop: $run req/s"
  [ "$run" -gt "$wrk_max" ] && wrk_max=$run
done
say "wrk closed-loop max:              $wrk_max req/s"

rig_held=$(search rig "$wrk_max")
oha_held=$(search oha "$wrk_max")

line=$(rig_probe 100000 30)
p99_100k=$(cut -f2 <<<"$line"); achieved_100k=$(cut -f1 <<<"$line"); lag_100k=$(cut -f3 <<<"$line")

jitter=""
for rate in 1000 10000 50000; do
  json="$WORK/jitter-$rate.json"
  taskset -c "$TOOL_CORE" target/release/rig load "$URL" --rate "$rate" --duration "${PROBE_SECONDS}s" \
    --connections "$CONNECTIONS" --progress off --json "$json" >/dev/null 2>&1 || true
  jitter="$jitter$(jq -r --arg r "$rate" '"  \($r)/s: generator lag p50 \(.generator_lag_seconds.p50 * 1e6 | floor) us, p99 \(.generator_lag_seconds.p99 * 1e6 | floor) us, p99.9 \(.generator_lag_seconds.p99_9 * 1e6 | floor) us"' "$json")
"
done

rss=$(rss_run 100000)

say ""
say "== rig load benchmark =="
say "wrk closed-loop max:                      $wrk_max req/s"
say "rig load highest held open-loop rate:     $rig_held req/s  ($(awk -v a="$rig_held" -v b="$wrk_max" 'BEGIN { printf "%.2f", a / b }') x wrk; target >= 0.80)"
say "oha -q --latency-correction highest held: $oha_held req/s  (rig / oha = $(awk -v a="$rig_held" -v b="$oha_held" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'); target >= 1.30)"
say "rig load at 100k rps:                     achieved $(printf '%.0f' "$achieved_100k")/s, p99 $(printf '%.2f' "$p99_100k") ms, generator lag p99 $(printf '%.3f' "$lag_100k") ms"
say "send jitter (generator lag = actual start - intended):"
printf '%s' "$jitter"
say "rig load RSS over 60 s at 100k rps:       peak $(cut -d'|' -f1 <<<"$rss") MB (target <= 64), every 5 s:$(cut -d'|' -f2 <<<"$rss")"
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
