#!/usr/bin/env bash
# Server overhead: requests/s of `carebench serve --pattern workerpool --workers 64
# --queue-size 1000` (metrics on, zero database latency) against a raw ASGI hello-world on the
# same uvicorn+uvloop+httptools stack, side by side in one run, alternating rounds. Server
# pinned to CPU 0, wrk to CPU 1. With BASELINE_REF, the same server at that git commit runs
# in every round too (its src/ unpacked to a temporary directory, first on PYTHONPATH), for a
# before/after measured side by side. With CAREBENCH_BENCH_LOCK set, each measurement holds
# that file's flock, so people sharing the machine do not measure at the same time.
#   usage: benchmarks/overhead.sh [DURATION_SECONDS] [ROUNDS] [BASELINE_REF]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
baseline_ref=${3:-}
bin=.venv/bin
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
baseline_src=
if [ -n "$baseline_ref" ]; then
  baseline_src=$(mktemp -d)
  trap 'rm -rf "$baseline_src"' EXIT
  git archive "$baseline_ref" src | tar -x -C "$baseline_src"
fi

free_port() { "$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.1
  done
  echo "error: server on port $1 did not become ready" >&2; return 1
}

measure() { # name, port, path, command...
  if [ -n "${CAREBENCH_BENCH_LOCK:-}" ] && [ -z "${HOLDING_LOCK:-}" ]; then
    HOLDING_LOCK=1 flock "$CAREBENCH_BENCH_LOCK" bash -c "$(declare -f measure wait_ready); \
      duration=$duration; measure \"\$@\"" measure "$@"
    return
  fi
  local name=$1 port=$2 path=$3; shift 3
  taskset -c 0 "$@" > /dev/null 2>&1 &
  local pid=$!
  wait_ready "$port" "$path"
  local rps
  rps=$(taskset -c 1 wrk -t1 -c64 -d"${duration}s" "http://127.0.0.1:$port$path" | awk '/Requests\/sec/ {print $2}')
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name $rps"
}

echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"
echo "# wrk -t1 -c64 -d${duration}s, server on CPU 0, wrk on CPU 1, $rounds alternating rounds"
serve=(serve --pattern workerpool --workers 64 --queue-size 1000 --min-latency 0 --max-latency 0
  --error-rate 0 --db-profile ideal --quiet)
for round in $(seq "$rounds"); do
  port=$(free_port)
  measure hello "$port" / "$bin/uvicorn" --app-dir benchmarks hello_asgi:app --port "$port" \
    --loop uvloop --http httptools --log-level warning --no-access-log
  port=$(free_port)
  measure carebench "$port" "/api/v1/patients?id=P12345" "$bin/carebench" "${serve[@]}" \
    --port "$port"
  if [ -n "$baseline_src" ]; then
    port=$(free_port)
    measure carebench-baseline "$port" "/api/v1/patients?id=P12345" \
      env PYTHONPATH="$baseline_src/src" "$bin/python" -m carebench "${serve[@]}" --port "$port"
  fi
  if "$bin/python" -c 'import granian' 2>/dev/null; then
    port=$(free_port)
    measure carebench-granian "$port" "/api/v1/patients?id=P12345" "$bin/carebench" \
      "${serve[@]}" --server granian --port "$port"
  fi
done | tee /tmp/carebench-overhead.txt
"$bin/python" - <<'PY'
import statistics
rates = {}
for line in open("/tmp/carebench-overhead.txt"):
    name, value = line.split()
    rates.setdefault(name, []).append(float(value))
hello, care = statistics.median(rates["hello"]), statistics.median(rates["carebench"])
print(f"median req/s: hello-world {hello:.0f}, carebench workerpool {care:.0f}, "
      f"ratio {care / hello:.2f}")
if "carebench-baseline" in rates:
    before = statistics.median(rates["carebench-baseline"])
    rounds = zip(rates["carebench"], rates["carebench-baseline"], strict=False)
    per_round = ", ".join(f"{now / then:.2f}" for now, then in rounds)
    print(f"median req/s: carebench at the baseline commit {before:.0f}; this tree "
          f"{care / before:.2f}x it (per round: {per_round})")
if "carebench-granian" in rates:
    granian = statistics.median(rates["carebench-granian"])
    print(f"median req/s: carebench workerpool on granian {granian:.0f}, "
          f"{granian / care:.2f}x uvicorn, {granian / hello:.2f}x the hello-world on uvicorn")
PY
