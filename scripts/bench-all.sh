#!/usr/bin/env bash
# Every measurement in docs/BENCHMARKS.md, in one go (about 12 minutes on
# the 2-core machine described there), then the plot.
#
#   bash scripts/bench-all.sh [OUT_DIR]      (default docs/bench)
#
# Each run is scripts/bench.sh: a fresh database and a fresh release server.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench}
mkdir -p "$out/sweep"
run() { echo "== $*" >&2; bash scripts/bench.sh "$@"; }

# The targets, each with its PostgreSQL ceiling measured in the same run.
run steady "$out/steady.json"
run burst "$out/burst.json"
run fan-out "$out/fan-out-5000.json"
run fan-out "$out/fan-out-10000.json" --clients 10000
# CPU per frame at a fan-out of 100: 10 invoice rooms and 1 address room of
# 100 clients each, 400 payments/s (40,000 frames/s).
run fan-out "$out/fan-out-100.json" --rooms 10 --clients 1100 --rate 400 --seconds 10
run idle-conns "$out/idle-conns-10000.json"
run reconnect-storm "$out/reconnect-storm.json"

# Latency against rate (the steady rooms), and memory against connections.
for rate in 250 500 1000 1500 2000 2500 3000; do
    run steady "$out/sweep/steady-rate-$rate.json" --rate "$rate" --seconds 10 --warmup 3 \
        --ceiling-seconds 3
done
for clients in 1000 2500 5000 10000 15000; do
    run idle-conns "$out/sweep/idle-conns-$clients.json" --clients "$clients" --no-ceiling
done

bash scripts/bench-plot.sh "$out"
