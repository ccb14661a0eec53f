# Two commands do all set-up: `make run` and `make test` install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The load generator's request path compiled with Cython (carebench/loadgen/compiled.py),
# rebuilt whenever its source changes. Without a C compiler the build fails with a warning and
# the Python modules run instead (slower); `make test` then fails its compiled pass.
COMPILED_SOURCES := $(wildcard src/carebench/loadgen/protocol.p* src/carebench/loadgen/callback_loop.p*) tools/build_compiled.py
COMPILED := $(VENV)/.compiled

.PHONY: install compiled run serve test lint format docs clean profile overhead benchmarks-md bench bench-baseline bench-compare reliability

install: $(STAMP) $(COMPILED)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

compiled: $(COMPILED)

# A failed build leaves no stamp, so the next make tries again.
$(COMPILED): $(STAMP) $(COMPILED_SOURCES)
	$(BIN)/python tools/build_compiled.py --quiet && touch $(COMPILED) \
		|| echo "warning: the compiled load generator did not build; the Python one will run" >&2

# Time-bounded runs: with a request budget, patterns that reject fast burn through it in a
# fraction of a second and their rates are noise (see README, "How to read the results").
# Refused clients wait Retry-After, as real clients should: re-sending at once would turn every
# shedding pattern into a rejection storm whose cost the server pays instead of serving.
run: $(STAMP) $(COMPILED)
	$(BIN)/carebench loadtest --duration 6 --warmup 1 --honor-retry-after

serve: $(STAMP)
	$(BIN)/carebench serve

lint: $(STAMP)
	$(BIN)/ruff check --no-cache src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks tools
	$(BIN)/ruff check --fix src tests benchmarks tools

# The CLI reference is generated from the settings' definitions; a test fails when it is stale.
docs: $(STAMP)
	$(BIN)/python -m carebench.cli.reference > docs/cli.md

# The whole suite on the Python modules (coverage sees their lines), then the load generator's
# tests again on the compiled build, which must be present and built from today's source: the
# quick ones (protocol, loops, recording: ~10 s) and the end-to-end runs against a real server
# (~17 s); the rest of tests/loadgen's slow ones drive processes, not the request path.
COMPILED_TESTS := CAREBENCH_REQUIRE_COMPILED=1 $(BIN)/pytest -q -p no:cacheprovider
test: lint $(COMPILED)
	CAREBENCH_PURE_PYTHON=1 $(BIN)/pytest --cov --cov-report=term
	$(COMPILED_TESTS) -m "not slow" tests/loadgen
	$(COMPILED_TESTS) tests/loadgen/test_loadtest_end_to_end.py

# Microbenchmarks (the analogue of `go test -bench=. -benchmem`); not part of `make test`.
BENCH_DIR := .benchmarks
BENCH := $(BIN)/pytest benchmarks -p no:cacheprovider --benchmark-columns=min,median,iqr,ops,rounds
# The noise band of probes_per_1k_requests between runs of unchanged code, measured on this
# 2-core machine (benchmarks/README.md, "Noise band"): -21 % .. +11.5 %. 25 % fails on none of
# those runs and still catches a hot path that got a quarter more expensive.
BENCH_MAX_SLOWDOWN ?= 25

bench: $(STAMP) $(COMPILED)
	mkdir -p $(BENCH_DIR)
	$(BENCH) --benchmark-json=$(BENCH_DIR)/latest.json --benchmark-autosave

bench-baseline: $(STAMP) $(COMPILED)
	mkdir -p $(BENCH_DIR)
	$(BENCH) --benchmark-json=$(BENCH_DIR)/baseline.json

bench-compare: $(STAMP) $(COMPILED)
	@test -f $(BENCH_DIR)/baseline.json || { echo "error: no $(BENCH_DIR)/baseline.json; run 'make bench-baseline' first" >&2; exit 2; }
	$(BENCH) --benchmark-json=$(BENCH_DIR)/latest.json --benchmark-compare=$(BENCH_DIR)/baseline.json
	$(BIN)/python benchmarks/compare.py $(BENCH_DIR)/baseline.json $(BENCH_DIR)/latest.json --max-slowdown $(BENCH_MAX_SLOWDOWN)

# CPU profile of the server under load -> results/profile-workerpool.html
profile: $(STAMP)
	benchmarks/profile.sh workerpool 8

# Server overhead against a raw ASGI hello-world on the same stack (needs wrk)
overhead: $(STAMP)
	benchmarks/overhead.sh 10 3

# Every run behind BENCHMARKS.md (~100 min on 2 cores), then the document itself
benchmarks-md: $(STAMP)
	benchmarks/collect.sh
	$(BIN)/carebench report results/benchmarks --markdown BENCHMARKS.md

# The reliability suite and the property tests, long variants (a 10-minute soak among them:
# ~27 min in all on the 2-core machine), then RELIABILITY.md from the figures each test recorded and pytest's
# report of the run. The document is written even when a test fails: it shows what failed.
RELIABILITY_OUT := results/reliability
RELIABILITY_RUN := CAREBENCH_RELIABILITY_LONG=1 \
	CAREBENCH_RELIABILITY_FIGURES=$(RELIABILITY_OUT)/figures.jsonl \
	$(BIN)/pytest tests/reliability tests/property -p no:cacheprovider --no-cov --timeout 900 \
	--junitxml=$(RELIABILITY_OUT)/junit.xml

reliability: $(STAMP)
	rm -rf $(RELIABILITY_OUT)
	mkdir -p $(RELIABILITY_OUT)
	status=0; $(RELIABILITY_RUN) || status=$$?; \
	$(BIN)/python -m carebench.report.reliability --figures $(RELIABILITY_OUT)/figures.jsonl \
		--junit $(RELIABILITY_OUT)/junit.xml --command 'make reliability' \
		--command '$(RELIABILITY_RUN)' --output RELIABILITY.md && exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
	rm -f src/carebench/loadgen/_compiled_*
