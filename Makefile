# Two entry points a newcomer needs: `make run` (site on the sandbox + SQLite, seeded) and
# `make test` (ruff, the import contracts, strict mypy, the whole suite on SQLite with the
# browser tests and, alongside, every test that uses the database again on PostgreSQL when
# reachable; .ci/run calls exactly this).
# `make bench` runs bench/run.py (PostgreSQL on 127.0.0.1:5432; BENCH_ARGS passes options).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install lint bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/flask --app app db upgrade
	$(BIN)/flask --app app seed
	$(BIN)/flask --app app run --host $(HOST) --port $(PORT)

test: $(STAMP)
	scripts/ensure-chromium
	scripts/ensure-nginx
	scripts/ensure-sdk-types
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	scripts/pytest-suites -n 2

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	scripts/ensure-postgres
	$(BIN)/python bench/run.py $(BENCH_ARGS)
