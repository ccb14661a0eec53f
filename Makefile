# Two commands do all set-up: `make run` and `make test` install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run serve test lint format clean profile overhead benchmarks-md

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Time-bounded runs: with a request budget, patterns that reject fast burn through it in a
# fraction of a second and their rates are noise (see README, "How to read the results").
run: $(STAMP)
	$(BIN)/carebench loadtest --duration 6 --warmup 1

serve: $(STAMP)
	$(BIN)/carebench serve

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

test: lint
	$(BIN)/pytest --cov --cov-report=term

# CPU profile of the server under load -> results/profile-workerpool.html
profile: $(STAMP)
	benchmarks/profile.sh workerpool 8

# Server overhead against a raw ASGI hello-world on the same stack (needs wrk)
overhead: $(STAMP)
	benchmarks/overhead.sh 10 3

# Every run behind BENCHMARKS.md (~15 min), then the document itself
benchmarks-md: $(STAMP)
	benchmarks/collect.sh
	$(BIN)/carebench report results/benchmarks --markdown BENCHMARKS.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
