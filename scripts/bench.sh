#!/usr/bin/env bash
# Runs one paywatch-bench scenario against a fresh release server.
#
#   bash scripts/bench.sh SCENARIO OUT.json [paywatch-bench options...]
#
# Builds the release binaries, creates a scratch database (pw_bench, dropped
# and re-created each run), migrates it, starts `paywatch serve` on
# 127.0.0.1:18080 with a high open-files limit and connection caps above the
# scenario's, runs the scenario, and stops the server. PostgreSQL must answer
# at $BENCH_PG (default postgres://postgres@127.0.0.1:5432).
#
# Server settings can be changed through the environment (PAYWATCH_*); they
# are passed on unchanged. Set BENCH_PERF=FILE to record the server with
# `perf record -g` (software cpu-clock) while the scenario runs, and
# BENCH_METRICS=FILE to keep the server's /metrics as they were at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:?usage: scripts/bench.sh SCENARIO OUT.json [options]}
out=${2:?usage: scripts/bench.sh SCENARIO OUT.json [options]}
shift 2
pg=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
db="$pg/pw_bench"
listen=127.0.0.1:18080

cargo build --release --bins --quiet
psql -q "$pg/postgres" -c "drop database if exists pw_bench with (force)" -c "create database pw_bench"
DATABASE_URL=$db target/release/paywatch migrate >/dev/null

# As many open files as the hard limit allows (10,000 connections need 10,000).
ulimit -n "$(ulimit -Hn)"
export DATABASE_URL=$db PAYWATCH_LISTEN=$listen RUST_LOG=${RUST_LOG:-warn}
export PAYWATCH_MAX_CONNECTIONS=${PAYWATCH_MAX_CONNECTIONS:-30000}
export PAYWATCH_MAX_CONNECTIONS_PER_IP=${PAYWATCH_MAX_CONNECTIONS_PER_IP:-30000}
target/release/paywatch serve &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://$listen/readyz" >/dev/null

if [ -n "${BENCH_PERF:-}" ]; then
    perf record -e cpu-clock -F 999 -g -p "$server" -o "$BENCH_PERF" 2>/dev/null &
    perf_pid=$!
fi
mkdir -p "$(dirname "$out")"
target/release/paywatch-bench --scenario "$scenario" --url "ws://$listen" \
    --database-url "$db" --pid "$server" --json "$out" "$@"
if [ -n "${BENCH_PERF:-}" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
fi
if [ -n "${BENCH_METRICS:-}" ]; then
    curl -fsS "http://$listen/metrics" >"$BENCH_METRICS"
fi
