#!/usr/bin/env bash
# Cost of the embedded Toxiproxy-compatible proxy (`rig toxiproxy`) with no toxics, against
# nginx directly, measured in the same run (machines are noisy: read the ratios).
#
#   bash bench/proxy.sh                 # 10 s per measurement
#   SECONDS_PER_RUN=20 bash bench/proxy.sh
#
# 1. Closed-loop throughput with wrk (64 keep-alive connections): proxy / direct, target >= 0.7.
# 2. Open-loop latency at 10,000 requests/s with `rig load` (latency from the intended send
#    time; wrk2 is not packaged): p99 through the proxy minus p99 direct, target <= 0.2 ms.
#
# Both also run through a bare user-space proxy (`tokio::io::copy_bidirectional`, the
# `bare_proxy` example of crates/chaos): on 2 cores any proxy competes with wrk and nginx for
# CPU, so "rig toxiproxy / bare" shows what the chaos proxy itself adds. Runs alternate twice
# so drift in machine load hits every target alike.
#
# Everything listens on 127.0.0.1 (free ports picked at start) and stops at the end.
# Needs nginx (Debian nginx-light), wrk and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${SECONDS_PER_RUN:-10}"
rate="${RATE:-10000}"
work="$(mktemp -d)"
pids=()
cleanup() {
  # TERM, not INT: background jobs of a script ignore SIGINT unless they handle it themselves.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "bench/proxy.sh needs $tool (apt-get install nginx-light wrk)" >&2; exit 2; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nginx_port="$(free_port)"
proxy_port="$(free_port)"
bare_port="$(free_port)"

echo "building rig (release)..." >&2
cargo build --release -p rig >/dev/null 2>&1
cargo build --release -p chaos --example bare_proxy >/dev/null 2>&1
rig=target/release/rig

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:$nginx_port; location / { return 200 "ok\n"; } }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

cat >"$work/proxies.json" <<JSON
[{"name": "bench", "listen": "127.0.0.1:$proxy_port", "upstream": "127.0.0.1:$nginx_port"}]
JSON
"$rig" toxiproxy --listen 127.0.0.1:0 --seed 1 --config "$work/proxies.json" >"$work/toxiproxy.out" 2>&1 &
pids+=($!)
target/release/examples/bare_proxy "127.0.0.1:$bare_port" "127.0.0.1:$nginx_port" &
pids+=($!)

wait_port() {
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
    sleep 0.1  # start-up poll of a process we just launched, not a measurement
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}
wait_port "$nginx_port"
wait_port "$proxy_port"
wait_port "$bare_port"
direct="http://127.0.0.1:$nginx_port/"
proxied="http://127.0.0.1:$proxy_port/"
bare="http://127.0.0.1:$bare_port/"
api="$(grep -o 'http://[0-9.:]*' "$work/toxiproxy.out" | head -n 1)"
toxics="$(curl -s "$api/proxies/bench/toxics" 2>/dev/null || echo '?')"
echo "nginx $direct; rig toxiproxy $proxied (API $api, toxics: $toxics); bare proxy $bare"

wrk_rps() { wrk -t1 -c64 -d"${secs}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
echo "throughput (wrk -t1 -c64 -d${secs}s, alternating):"
tp=()
for round in 1 2; do
  for name in direct proxied bare; do
    rps="$(wrk_rps "${!name}")"
    printf '  %-8s %10s req/s\n' "$name" "$rps"
    tp+=("$name=$rps")
  done
done

load_p99() {
  "$rig" load "$1" --rate "$rate" --duration "${secs}s" --connections 64 --progress off \
    --json "$work/$2.json" >"$work/$2.txt" 2>&1
  python3 - "$work/$2.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lat, svc, t = s["latency_seconds"], s["service_seconds"], s["totals"]
print(f'{lat["p50"]*1e3:.3f} {lat["p99"]*1e3:.3f} {svc["p99"]*1e3:.3f} {t["achieved_rate"]:.0f} {t["ok"]} {t["scheduled"]}')
PY
}
echo "open-loop latency (rig load --rate $rate --connections 64, ${secs}s, alternating):"
lat=()
for round in 1 2; do
  for name in direct proxied bare; do
    read -r l50 l99 s99 achieved ok scheduled <<<"$(load_p99 "${!name}" "$name$round")"
    printf '  %-8s p50 %7sms  p99 %7sms  (service p99 %7sms)  at %s/s, ok %s/%s\n' \
      "$name" "$l50" "$l99" "$s99" "$achieved" "$ok" "$scheduled"
    lat+=("$name=$l99")
  done
done

python3 - "${tp[@]}" -- "${lat[@]}" <<'PY'
import sys
args = sys.argv[1:]
split = args.index("--")
def mean(pairs):
    sums = {}
    for pair in pairs:
        name, value = pair.split("=")
        sums.setdefault(name, []).append(float(value))
    return {name: sum(v) / len(v) for name, v in sums.items()}
tp, p99 = mean(args[:split]), mean(args[split + 1:])
ratio = tp["proxied"] / tp["direct"]
print(f"RESULT throughput rig toxiproxy / direct = {ratio:.2f} (target >= 0.70) {'PASS' if ratio >= 0.7 else 'MISS'}")
print(f"RESULT throughput rig toxiproxy / bare proxy = {tp['proxied'] / tp['bare']:.2f}; bare / direct = {tp['bare'] / tp['direct']:.2f}")
added = p99["proxied"] - p99["direct"]
print(f"RESULT p99 added at the offered rate = {added:.3f} ms (target <= 0.200) {'PASS' if added <= 0.2 else 'MISS'}")
print(f"RESULT p99 added by the bare proxy = {p99['bare'] - p99['direct']:.3f} ms (same run, for comparison)")
PY
