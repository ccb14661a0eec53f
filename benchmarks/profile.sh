#!/usr/bin/env bash
# CPU profile of the server under load: start `carebench serve --enable-profiling` at zero
# database latency, drive it with `carebench loadtest --target`, and save what
# GET /debug/profile returns while the load runs.
#   usage: benchmarks/profile.sh [PATTERN] [SECONDS]   -> results/profile-PATTERN.html (+ .speedscope.json)
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-workerpool}
seconds=${2:-8}
bin=.venv/bin
mkdir -p results
port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
taskset -c 0 "$bin/carebench" serve --port "$port" --pattern "$pattern" --enable-profiling \
  --queue-size 100000 --limit 1000 --rate-limit 1000000 --burst 100000 \
  --min-latency 0 --max-latency 0 --error-rate 0 --db-profile ideal --quiet > /dev/null &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "$url/health" && break; sleep 0.1; done
taskset -c 1 "$bin/carebench" loadtest --target "$url" --duration "$((seconds * 2 + 4))" \
  --concurrency 64 --json > /dev/null &
load=$!
sleep 2
curl -s "$url/debug/profile?seconds=$seconds" -o "results/profile-$pattern.html"
curl -s "$url/debug/profile?seconds=$seconds&format=speedscope" \
  -o "results/profile-$pattern.speedscope.json"
wait "$load"
echo "wrote results/profile-$pattern.html (open in a browser) and" \
  "results/profile-$pattern.speedscope.json (https://www.speedscope.app)"
echo "external alternative: py-spy record --pid <server pid> -o profile.svg"
