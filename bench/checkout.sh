#!/usr/bin/env bash
# Sustained confirmed checkouts/s of the reference system on SQLite and on PostgreSQL, beside
# `pgbench -N` on the same PostgreSQL in the same run (machines are noisy: read the ratio).
#
#   bash bench/checkout.sh            # 10 s per measurement
#   SECONDS_PER_RUN=30 bash bench/checkout.sh
#
# Targets: PostgreSQL checkouts/s >= 1/8 of pgbench -N tps; SQLite >= 1,000 checkouts/s.
# Needs a PostgreSQL it may create a database in (BENCH_PG, default 127.0.0.1:5432, user
# postgres) and pgbench (Debian: postgresql-contrib / postgresql-client).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${SECONDS_PER_RUN:-10}"
pg_host="${BENCH_PG_HOST:-127.0.0.1}"
pg_port="${BENCH_PG_PORT:-5432}"
pg_user="${BENCH_PG_USER:-postgres}"
db=rig_bench
url="postgres://$pg_user@$pg_host:$pg_port/$db"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

psql_admin() { psql -h "$pg_host" -p "$pg_port" -U "$pg_user" -qAt -v ON_ERROR_STOP=1 "$@"; }
psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql_admin -d postgres -c "CREATE DATABASE $db"

echo "building the benchmark (release)..." >&2
cargo bench -p target-system --bench checkout --no-run >/dev/null 2>&1

echo "pgbench -N (16 clients, ${secs}s)..." >&2
pgbench -h "$pg_host" -p "$pg_port" -U "$pg_user" -i -s 10 -q "$db" >/dev/null 2>&1
pg_tps=$(pgbench -h "$pg_host" -p "$pg_port" -U "$pg_user" -N -c 16 -j 2 -T "$secs" "$db" 2>/dev/null |
  sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1)

figure() {
  cargo bench -q -p target-system --bench checkout -- --store "$1" --seconds "$secs" 2>/dev/null |
    sed -n 's/^confirmed_checkouts_per_sec=\([0-9]*\).*/\1/p'
}
echo "checkouts on SQLite (${secs}s)..." >&2
sqlite_rate=$(figure "sqlite://$work/stores")
echo "checkouts on PostgreSQL (${secs}s)..." >&2
pg_rate=$(figure "$url")

psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"

awk -v pg_tps="$pg_tps" -v pg="$pg_rate" -v lite="$sqlite_rate" 'BEGIN {
  printf "%-44s %10s\n", "measurement", "per second"
  printf "%-44s %10.0f\n", "pgbench -N tps (16 clients)", pg_tps
  printf "%-44s %10.0f\n", "confirmed checkouts, PostgreSQL", pg
  printf "%-44s %10.0f\n", "confirmed checkouts, SQLite", lite
  printf "PostgreSQL checkouts / pgbench -N = %.3f (target >= 0.125: %s)\n", pg / pg_tps, (pg / pg_tps >= 0.125 ? "met" : "NOT met")
  printf "SQLite checkouts = %.0f/s (target >= 1000: %s)\n", lite, (lite >= 1000 ? "met" : "NOT met")
}'
