#!/usr/bin/env bash
# Every run BENCHMARKS.md is generated from, into results/benchmarks/ (about 100 minutes on the
# 2-core machine, 55 of them the scenario matrix): load tests at 100 and 500 clients on both
# database profiles, a concurrency sweep, the server-overhead ratio, the load generator against
# wrk, one server process against two (benchmarks/processes.py), one generator against two,
# the server beside the Go reference (benchmarks/reference.sh), the cost of the safeguards,
# every pattern against the oracle (benchmarks/scenario_matrix.py), the microbenchmarks, and
# the real databases (benchmarks/collect_databases.sh: PostgreSQL and SQLite, calibrated).
#   usage: benchmarks/collect.sh   (then: carebench report results/benchmarks --markdown BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out=results/benchmarks
mkdir -p "$out" docs
for profile in realistic ideal; do
  for clients in 100 500; do
    echo "== loadtest $profile c$clients" >&2
    "$bin/carebench" loadtest --concurrency "$clients" --duration 10 --warmup 2 \
      --db-profile "$profile" --seed 1 --output "$out/loadtest-$profile-c$clients.json" \
      > "$out/loadtest-$profile-c$clients.txt"
  done
done
# Clients that wait Retry-After when refused: shedding without the rejection storm.
echo "== loadtest realistic c500, honouring Retry-After" >&2
"$bin/carebench" loadtest --concurrency 500 --duration 10 --warmup 2 --honor-retry-after \
  --seed 1 --output "$out/loadtest-realistic-h500.json" > "$out/loadtest-realistic-h500.txt"
# Open loop at twice the realistic database's capacity (~140 req/s with 20 workers): arrivals
# do not slow down when the server does, unlike closed-loop clients.
echo "== loadtest realistic open loop 280/s" >&2
"$bin/carebench" loadtest --rate 280 --duration 10 --warmup 2 --concurrency 1000 --seed 1 \
  --output "$out/loadtest-realistic-r280.json" > "$out/loadtest-realistic-r280.txt"
echo "== sweep" >&2
"$bin/carebench" sweep --concurrency 10,25,50,100,200,400 --duration 5 --warmup 1 --seed 1 \
  --output "$out/sweep.json" --png docs/sweep.png > "$out/sweep.txt"
benchmarks/collect_databases.sh
echo "== overhead" >&2
benchmarks/overhead.sh 10 3 > "$out/overhead.txt"
echo "== load generator vs wrk" >&2
"$bin/python" benchmarks/client_vs_wrk.py --duration 10 --runs 11 > "$out/client_vs_wrk.txt"
echo "== serve --processes 1 vs 2" >&2
"$bin/python" benchmarks/processes.py --rounds 5 --duration 10 > "$out/processes.txt"
echo "== loadtest --generators 1 vs 2" >&2
"$bin/python" benchmarks/generators.py --duration 8 --runs 5 > "$out/generators.txt"
# Prints "skipped: <reason>" (exit 0) without Go or the reference's sources (REFERENCE_SRC=DIR).
echo "== versus the Go reference server" >&2
benchmarks/reference.sh 10 5 > "$out/reference.txt"
echo "== cost of the safeguards" >&2
"$bin/python" benchmarks/safeguards_cost.py --rounds 3 --duration 5 --warmup 1 \
  --output "$out/safeguards_cost.txt"
echo "== every pattern against the oracle (scenario matrix, ~55 min)" >&2
"$bin/python" benchmarks/scenario_matrix.py --refine 2
echo "== microbenchmarks" >&2
make bench > "$out/bench.txt"
cp .benchmarks/latest.json "$out/bench.json"
echo "done: $out" >&2
