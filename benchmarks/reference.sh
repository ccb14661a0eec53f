#!/usr/bin/env bash
# carebench beside the Go reference server (github.com/Stella-Achar-Oiro/healthcare-api-benchmark)
# at zero database latency, side by side in one run: both on the worker pool (64 workers, queue
# 1000, no errors), each pinned to CPU 0 (Go with GOMAXPROCS=1), `wrk -t1 -c64` on CPU 1 against
# GET /api/v1/patients?id=P12345, rounds alternating which server goes first. Each run records
# req/s, the server's CPU (cores used, from /proc/PID/stat) and req/s per core-second.
# The reference is built from source at run time, never stored in carebench.
#   usage: benchmarks/reference.sh [DURATION_SECONDS] [ROUNDS]
#   REFERENCE_SRC=DIR  its sources: a checkout or a bare git directory (default: a shallow clone
#                      of REFERENCE_URL cached in ~/.cache/carebench)
#   CAREBENCH_SRC=DIR  run carebench from DIR (e.g. `git archive HEAD src | tar -x -C DIR` gives
#                      DIR/src) instead of the working tree, for a named revision
# Prints "skipped: <reason>" and exits 0 when Go, wrk, a second core or the sources are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
rounds=${2:-3}
bin=.venv/bin
url=${REFERENCE_URL:-https://github.com/Stella-Achar-Oiro/healthcare-api-benchmark}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/carebench
path="/api/v1/patients?id=P12345"
ticks=$(getconf CLK_TCK)
TIMEFORMAT='%U %S' # `time`: user and system CPU seconds of wrk

skip() {
  echo "skipped: $*"
  echo "reference.sh skipped: $*" >&2
  exit 0
}

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n $server ]]; then kill -TERM "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

require_tools() {
  command -v go >/dev/null || skip "Go is not installed (apt-get install golang-go)"
  command -v wrk >/dev/null || skip "wrk is not installed (apt-get install wrk)"
  command -v taskset >/dev/null || skip "taskset is not installed (apt-get install util-linux)"
  command -v curl >/dev/null || skip "curl is not installed (apt-get install curl)"
  [[ $(nproc) -ge 2 ]] || skip "needs two cores (server on CPU 0, wrk on CPU 1); found $(nproc)"
}

# Sets `source` to a checkout or a git directory holding the reference.
locate_sources() {
  source=${REFERENCE_SRC:-}
  if [[ -n $source ]]; then
    [[ -d $source ]] || skip "REFERENCE_SRC=$source is not a directory"
    return
  fi
  source=$cache/healthcare-api-benchmark
  [[ -d $source ]] && return
  mkdir -p "$cache"
  GIT_TERMINAL_PROMPT=0 timeout 120 git clone --quiet --depth 1 "$url" "$work/clone" 2>/dev/null \
    || skip "could not clone $url (network closed?); set REFERENCE_SRC=DIR to a copy of it"
  mv "$work/clone" "$source"
}

# Copies only the Go sources and module files into $work/src (a stored copy may lack the large
# committed binaries, and nothing else is needed); sets `revision`.
export_sources() {
  local dir=$work/src file
  mkdir -p "$dir"
  if [[ ! -e $source/.git ]] && git --git-dir="$source" rev-parse -q --verify HEAD > /dev/null 2>&1
  then
    revision=$(git --git-dir="$source" rev-parse HEAD)
    while IFS= read -r file; do
      mkdir -p "$dir/$(dirname "$file")"
      git --git-dir="$source" show "HEAD:$file" > "$dir/$file"
    done < <(git --git-dir="$source" ls-tree -r --name-only HEAD | grep -E '(\.go|(^|/)go\.(mod|sum))$')
  else
    revision=$(git -C "$source" rev-parse HEAD 2>/dev/null || echo "unknown revision")
    (cd "$source" && find . -path ./.git -prune -o -type f \
      \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | xargs -0r cp --parents -t "$dir")
  fi
  [[ -f $dir/go.mod && -f $dir/main.go ]] || skip "no go.mod and main.go in $source"
}

# The reference listens on every interface (":PORT") and has no flag for it; benchmarks here
# stay on loopback, so the one line is narrowed before building. Nothing else is changed.
build_reference() {
  local dir=$work/src
  grep -q 'fmt.Sprintf(":%d", config.Port)' "$dir/main.go" \
    || skip "the reference's listen address line changed; not starting it on every interface"
  sed -i 's/fmt.Sprintf(":%d", config.Port)/fmt.Sprintf("127.0.0.1:%d", config.Port)/' "$dir/main.go"
  local requires
  requires=$(awk '/^require/ {print}' "$dir/go.mod")
  if ! (cd "$dir" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -o "$work/reference" . \
      > "$work/build.log" 2>&1); then
    sed 's/^/  /' "$work/build.log" >&2
    skip "go build failed$([[ -n $requires ]] && echo " (go.mod requires modules from the network: is GOPROXY reachable?)")"
  fi
}

free_port() { "$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "error: server on port $1 did not become ready" >&2
  return 1
}

# utime + stime of a process and its descendants, in clock ticks.
cpu_ticks() {
  local total=0 pid stat
  for pid in "$1" $(pgrep -P "$1" || true); do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    read -r -a fields <<< "$stat"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# Busy ticks of CPU 0 and CPU 1 (user, nice, system, irq, softirq, steal), whoever used them.
cpu_busy() { awk '$1 ~ /^cpu[01]$/ {printf "%d ", $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

start() { # port, command...
  local port=$1
  shift
  taskset -c 0 "$@" > /dev/null 2>&1 &
  server=$!
  wait_ready "$port"
}

stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
}

# The answer the run is about to be measured on: "STATUS BYTES", the body kept in $work/body.
probe() { curl -s -o "$work/body" -w '%{http_code} %{size_download}' "http://127.0.0.1:$1$path"; }

check_naive() {
  local port status bytes
  port=$(free_port)
  start "$port" "$work/reference" -pattern=naive -min-latency=0 -max-latency=1 -error-rate=0 \
    -port="$port"
  read -r status bytes <<< "$(probe "$port")"
  stop
  echo "# check: the reference's naive pattern answers $status with a $bytes-byte body (its handler returns before the query ends)"
}

measure() { # name, port, command...
  local name=$1 port=$2
  shift 2
  echo "== $name" >&2
  if ! start "$port" "$@"; then
    stop
    echo "# check: $name did not start: not measured"
    return
  fi
  local status bytes
  read -r status bytes <<< "$(probe "$port")"
  if [[ $status != 200 ]] || ! grep -q '"patient"' "$work/body"; then
    stop
    echo "# check: $name answered $status with $bytes bytes, no patient record: not measured:" \
      "$(head -c 200 "$work/body" | tr '\n' ' ')"
    return
  fi
  taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port$path" > /dev/null # warm-up
  local before after start_ns end_ns busy_before busy_after
  busy_before=$(cpu_busy)
  before=$(cpu_ticks "$server")
  start_ns=$(date +%s%N)
  { time taskset -c 1 wrk -t1 -c64 -d"${duration}s" "http://127.0.0.1:$port$path" \
      > "$work/wrk.txt" 2>&1; } 2> "$work/wrk-cpu.txt"
  end_ns=$(date +%s%N)
  after=$(cpu_ticks "$server")
  busy_after=$(cpu_busy)
  stop
  awk -v name="$name" -v hz="$ticks" -v bytes="$bytes" \
    -v wall="$(((end_ns - start_ns) / 1000))" -v client="$(cat "$work/wrk-cpu.txt")" \
    -v server_ticks="$((after - before))" -v busy_before="$busy_before" \
    -v busy_after="$busy_after" '
    /Requests\/sec/ { rps = $2 }
    /Non-2xx/ { bad += $NF }
    /Socket errors/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
    END {
      split(client, c, " "); split(busy_before, b0, " "); split(busy_after, b1, " ")
      seconds = wall / 1e6; cpu = server_ticks / hz / seconds; wrk = (c[1] + c[2]) / seconds
      other0 = (b1[1] - b0[1]) / hz / seconds - cpu; other1 = (b1[2] - b0[2]) / hz / seconds - wrk
      printf "%s %s cpu %.2f per-core %.0f wrk-cpu %.2f cpu0-others %.2f cpu1-others %.2f " \
        "errors %d body %d\n", name, rps, cpu, (cpu > 0 ? rps / cpu : 0), wrk,
        (other0 > 0 ? other0 : 0), (other1 > 0 ? other1 : 0), bad, bytes
    }' "$work/wrk.txt"
}

run_reference() {
  local port
  port=$(free_port)
  measure reference "$port" env GOMAXPROCS=1 "$work/reference" -pattern=workerpool -workers=64 \
    -queue-size=1000 -min-latency=0 -max-latency=1 -error-rate=0 -port="$port"
}

run_carebench() {
  local port
  port=$(free_port)
  measure carebench "$port" "${carebench[@]}" serve --pattern workerpool --workers 64 \
    --queue-size 1000 --db-profile ideal --min-latency 0 --max-latency 0 --error-rate 0 \
    --quiet --port "$port"
}

require_tools
locate_sources
export_sources
build_reference
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(date -u +%F)"
echo "# reference: $url @ $revision, built with $(go version | cut -d' ' -f3), listening on 127.0.0.1"
if [[ -n ${CAREBENCH_SRC:-} ]]; then
  carebench=(env PYTHONPATH="$CAREBENCH_SRC" "$bin/python" -m carebench)
  echo "# carebench: imported from $CAREBENCH_SRC"
else
  carebench=("$bin/carebench")
  echo "# carebench: $(git describe --always --dirty 2>/dev/null || echo "unknown revision") (the working tree as it is)"
fi
echo "# servers on CPU 0 (reference with GOMAXPROCS=1), wrk -t1 -c64 -d${duration}s on CPU 1 after a 1 s warm-up, $rounds rounds alternating which goes first"
echo "# per run: req/s, server CPU in cores, req/s per core-second, wrk's CPU in cores, CPU 0 and CPU 1 used by anything else (in cores: other processes, interrupts), non-2xx + socket errors, bytes of the checked body"
check_naive
for round in $(seq "$rounds"); do
  if ((round % 2)); then
    run_reference
    run_carebench
  else
    run_carebench
    run_reference
  fi
done > "$work/runs.txt"
cat "$work/runs.txt"
"$bin/python" - "$work/runs.txt" <<'PY'
import statistics
import sys

runs: dict[str, list[tuple[float, float, float]]] = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    name, rps, *pairs = line.split()
    fields = dict(zip(pairs[::2], map(float, pairs[1::2]), strict=True))
    others = max(fields["cpu0-others"], fields["cpu1-others"])
    runs.setdefault(name, []).append((float(rps), fields["cpu"], others))
if len(runs) < 2:
    print("median req/s: not measured (a server failed its check above)")
    sys.exit(0)
for name, values in runs.items():
    rates = [rps for rps, _, _ in values]
    if len(rates) > 1 and statistics.stdev(rates) >= 0.1 * statistics.fmean(rates):
        print(f"# warning: {name} runs spread widely (stdev >= 10 % of the mean); rerun")
    others = max(other for _, _, other in values)
    if others >= 0.05:
        print(f"# warning: something else took up to {others:.2f} of CPU 0 or 1 in {name} runs")
names = ("reference", "carebench")
ref_rps, care_rps = (statistics.median(rps for rps, _, _ in runs[n]) for n in names)
ref_cpu, care_cpu = (statistics.median(cpu for _, cpu, _ in runs[n]) for n in names)
ref_core, care_core = (statistics.median(rps / cpu for rps, cpu, _ in runs[n]) for n in names)
print(
    f"median req/s: reference {ref_rps:.0f}, carebench {care_rps:.0f}, ratio "
    f"{care_rps / ref_rps:.2f} (server CPU {ref_cpu:.2f} vs {care_cpu:.2f} cores; per "
    f"core-second {ref_core:.0f} vs {care_core:.0f}, ratio {care_core / ref_core:.2f})"
)
PY
