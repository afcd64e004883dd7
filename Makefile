# CryptoOrchestrator: `make run` starts the platform, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# Byte-code caching: without it every process recompiles ccxt and pandas (seconds each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint typecheck imports openapi openapi-check pytest test-postgres test-redis bench clean

# Installs with uv from uv.lock (uv itself comes from PyPI when missing); falls back to pip.
$(VENV)/.installed: pyproject.toml uv.lock
	@if ! command -v uv >/dev/null 2>&1; then $(PYTHON) -m pip install --quiet --disable-pip-version-check uv || true; fi
	@if command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1; then \
		UV="$$(command -v uv || echo '$(PYTHON) -m uv')"; \
		$$UV sync --locked --extra dev --python $(PYTHON); \
	else \
		$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet -e '.[dev]'; \
	fi
	@touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/cryptoorchestrator db upgrade
	$(BIN)/cryptoorchestrator serve --host $(HOST) --port $(PORT) --no-migrate

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

imports: install
	$(BIN)/lint-imports

openapi: install
	$(BIN)/cryptoorchestrator openapi export

openapi-check: install
	$(BIN)/cryptoorchestrator openapi export --check

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck imports openapi-check pytest

# The database suites against a real PostgreSQL (CO_TEST_DATABASE_URL) and Redis (CO_TEST_REDIS_URL).
test-postgres: install
	$(BIN)/python -m pytest -m "integration or postgres" $(PYTEST_ARGS)

test-redis: install
	$(BIN)/python -m pytest -m redis $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/api_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
