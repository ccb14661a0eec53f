#!/usr/bin/env bash
# The real-database runs behind BENCHMARKS.md, into results/benchmarks/ (about 12 minutes):
# a throwaway PostgreSQL (carebench db up) and a SQLite file, each calibrated (USL fit) and
# load-tested with every pattern at 100 and 500 clients and open loop at twice the best
# goodput; then the simulator calibrated to PostgreSQL, load-tested the same way, for the
# model-versus-reality ratios. PostgreSQL is pinned to CPU 0 with the carebench server, so
# the load generator keeps CPU 1 to itself.
#   usage: benchmarks/collect_databases.sh   (collect.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
out=results/benchmarks
mkdir -p "$out" docs
ids=uniform:10000
sqlite_file="$out/carebench.sqlite3"
pg_dir=$(mktemp -d /tmp/carebench-bench-pg.XXXXXX)
rmdir "$pg_dir"
cleanup() { "$bin/carebench" db down --dir "$pg_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== PostgreSQL up (pinned to CPU 0)" >&2
dsn=$(taskset -c 0 "$bin/carebench" db up --dir "$pg_dir")
rm -f "$sqlite_file"
"$bin/carebench" db seed --backend sqlite --db-path "$sqlite_file" >&2

best_goodput() {  # the highest goodput of a results file, as a whole number
  "$bin/python" -c 'import json,sys; print(round(max(r["goodput_per_second"] for r in json.load(open(sys.argv[1])))))' "$1"
}

run_backend() {  # name, then the backend's flags
  local name=$1
  shift
  echo "== calibrate $name" >&2
  "$bin/carebench" calibrate "$@" --output "$out/calibrate-$name.json" \
    --png "docs/calibrate-$name.png" > "$out/calibrate-$name.txt"
  for clients in 100 500; do
    echo "== loadtest $name c$clients" >&2
    "$bin/carebench" loadtest "$@" --ids "$ids" --concurrency "$clients" --duration 10 \
      --warmup 2 --seed 1 --output "$out/loadtest-$name-c$clients.json" \
      > "$out/loadtest-$name-c$clients.txt"
  done
  local rate=$((2 * $(best_goodput "$out/loadtest-$name-c100.json")))
  echo "== loadtest $name open loop $rate/s (2x the best goodput at 100 clients)" >&2
  rm -f "$out"/loadtest-"$name"-r*.json
  "$bin/carebench" loadtest "$@" --ids "$ids" --rate "$rate" --duration 10 --warmup 2 \
    --concurrency 1000 --seed 1 --output "$out/loadtest-$name-r$rate.json" \
    > "$out/loadtest-$name-r$rate.txt"
}

run_backend postgres --backend postgres --dsn "$dsn"
run_backend sqlite --backend sqlite --db-path "$sqlite_file"

# The simulator with the coefficients fitted to PostgreSQL, driven like PostgreSQL was.
mapfile -t flags < <("$bin/python" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["simulator_flags"]))' "$out/calibrate-postgres.json")
echo "== loadtest simulator calibrated to PostgreSQL: ${flags[*]}" >&2
"$bin/carebench" loadtest "${flags[@]}" --ids "$ids" --concurrency 100 --duration 10 \
  --warmup 2 --seed 1 --output "$out/loadtest-calibrated-c100.json" \
  > "$out/loadtest-calibrated-c100.txt"
echo "done: real databases in $out" >&2
