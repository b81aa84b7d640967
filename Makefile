# market-data: `make run` brings up the simulator and Dagster; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MARKET_DATA_CONFIG ?= $(CURDIR)/watchlist.yaml
SIM_PORT ?= 8765
HOST ?= 127.0.0.1
PORT ?= 3000
API_PORT ?= 8787
PROD_HOME ?= $(CURDIR)/.dagster-prod
# The instance of `make serve`: dagster.postgres.yaml (each run a process of this machine) or
# dagster.celery.yaml (each run a task on a Celery worker of any host: `make serve-workers`).
INSTANCE ?= dagster.postgres.yaml
# `make serve-workers`: one worker per queue (named after it), each running up to
# CONCURRENCY runs at once; on a host with one exchange's egress address, QUEUES=exchange.<name>.
QUEUES ?= exchange.binance exchange.bitfinex exchange.coinbase exchange.kraken dagster
CONCURRENCY ?= 4
WORKER_HOME ?= $(CURDIR)/.dagster-workers
# Debian's Chromium, for the browser tests (installed by `make test` when missing).
CHROMIUM ?= /usr/bin/chromium
# promtool (Debian's prometheus package), for the test of the shipped alerting rules.
PROMTOOL ?= /usr/bin/promtool
# RabbitMQ's server, for the Celery tests' throwaway broker (Debian's rabbitmq-server).
RABBITMQ ?= /usr/sbin/rabbitmq-server

# The whole dependency tree, every version and hash, resolved by `make lock` (uv) from
# pyproject.toml's ranges; every install of the project goes through it.
LOCK := requirements.lock
LATEST := .venv-latest

.PHONY: install lock test-latest run serve serve-workers celery-env pools test lint format bench bench-scale clean

# The lock first (pip checks every hash), then the project itself, editable, without
# resolving anything again; the build backend (setuptools) comes from the lock too.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Re-lock on purpose, then run `make test`. `make lock` keeps every locked version that
# still fits pyproject.toml's ranges (the smallest change: after adding a package or
# editing a range); `make lock UPGRADE=1` takes the newest versions the ranges allow.
# The lock is universal (any Python of requires-python, any platform) and carries a
# fingerprint of the ranges it was resolved from (test_lock.py compares).
UPGRADE ?=
lock:
	test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK); }
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --generate-hashes \
	  --python-version 3.11 --custom-compile-command "make lock" --quiet -o $(LOCK) \
	  $(if $(UPGRADE),--upgrade)
	$(BIN)/python -m market_data_tests.lockfile stamp $(LOCK)

# Early warning of upstream breakage: the suite against the newest versions the ranges
# allow, in a throwaway venv ($(LATEST)); the lock and .venv stay as they are.
test-latest: $(CHROMIUM) $(PROMTOOL) $(RABBITMQ)
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/pytest

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q \
	       && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium; }

$(PROMTOOL):
	@echo "installing Debian's prometheus for promtool (the alerting rules' tests)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q prometheus \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q \
	       && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q prometheus; }

$(RABBITMQ):
	@echo "installing Debian's rabbitmq-server for the Celery tests (each starts a broker of its own)"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q rabbitmq-server \
	  || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q \
	       && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q rabbitmq-server; }

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

# The simulator, Dagster (webserver + daemon), the live service (closed candles over
# WebSocket) and the status API on the embedded defaults; Ctrl-C stops all. HOST/PORT: the UI; API_PORT: the status API; SIM_PORT: the simulator
# (the watchlist's exchange URLs follow it).
run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	export DATABASE_URL="$${DATABASE_URL:-sqlite:///$(CURDIR)/.market_data/candles.sqlite}"; \
	export MARKET_DATA_BINANCE_URL="http://127.0.0.1:$(SIM_PORT)"; \
	export MARKET_DATA_BITFINEX_URL="http://127.0.0.1:$(SIM_PORT)/bitfinex"; \
	export MARKET_DATA_COINBASE_URL="http://127.0.0.1:$(SIM_PORT)/coinbase"; \
	export MARKET_DATA_KRAKEN_URL="http://127.0.0.1:$(SIM_PORT)/kraken"; \
	mkdir -p .market_data; \
	$(BIN)/market-data db init && \
	{ $(BIN)/market-data simulate --port $(SIM_PORT) & sim=$$!; \
	  $(BIN)/market-data api --host $(HOST) --port $(API_PORT) & api=$$!; \
	  $(BIN)/market-data live & live=$$!; \
	  trap 'kill $$sim $$api $$live 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT); }

# Production shape: webserver, daemon, live service and status API as separate processes, Dagster's
# storage and the candle store on PostgreSQL. Needs DATABASE_URL (candles) and
# DAGSTER_POSTGRES_URL (postgresql+psycopg2://...); see docs/DEPLOYMENT.md.
serve: $(STAMP)
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL (postgresql://...)"; exit 2; }
	@test -n "$$DAGSTER_POSTGRES_URL" || { echo "set DAGSTER_POSTGRES_URL (postgresql+psycopg2://...)"; exit 2; }
	@case "$(INSTANCE)" in *celery*) $(MAKE) --no-print-directory celery-env;; esac
	mkdir -p $(PROD_HOME)
	ln -sf $(CURDIR)/$(INSTANCE) $(PROD_HOME)/dagster.yaml
	export DAGSTER_HOME=$(PROD_HOME); \
	$(BIN)/market-data db init && $(BIN)/market-data pools && \
	{ $(BIN)/dagster-daemon run -w workspace.yaml & daemon=$$!; \
	  $(BIN)/market-data api --host $(HOST) --port $(API_PORT) & api=$$!; \
	  $(BIN)/market-data live & live=$$!; \
	  trap 'kill $$daemon $$api $$live 2>/dev/null' EXIT INT TERM; \
	  $(BIN)/dagster-webserver -w workspace.yaml -h $(HOST) -p $(PORT); }

# Celery workers for the runs of `make serve INSTANCE=dagster.celery.yaml`, on this host or
# any other with the project installed and the same environment (docs/DEPLOYMENT.md).
serve-workers: $(STAMP) celery-env
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL (postgresql://...)"; exit 2; }
	@test -n "$$DAGSTER_POSTGRES_URL" || { echo "set DAGSTER_POSTGRES_URL (postgresql+psycopg2://...)"; exit 2; }
	mkdir -p $(WORKER_HOME)
	ln -sf $(CURDIR)/dagster.celery.yaml $(WORKER_HOME)/dagster.yaml
	export DAGSTER_HOME=$(WORKER_HOME); pids=""; \
	for q in $(QUEUES); do \
	  $(BIN)/celery -A market_data.workers worker -Q $$q -n $${q#exchange.}@%h \
	    -c $(CONCURRENCY) --loglevel INFO & pids="$$pids $$!"; \
	done; \
	trap 'kill $$pids 2>/dev/null; wait' EXIT INT TERM; wait

celery-env:
	@test -n "$$CELERY_BROKER_URL" || { echo "set CELERY_BROKER_URL (amqp://user:password@host:5672//)"; exit 2; }
	@test -n "$$CELERY_RESULT_BACKEND" || { echo "set CELERY_RESULT_BACKEND (redis://host:6379/0)"; exit 2; }

# Per-exchange concurrency pools in the instance of DAGSTER_HOME.
pools: $(STAMP)
	$(BIN)/market-data pools

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint $(CHROMIUM) $(PROMTOOL) $(RABBITMQ)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/simulator_pages.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/vs_freqtrade.py
	$(BIN)/python bench/budget.py
	$(BIN)/python bench/gaps.py
	$(BIN)/python bench/series_counts.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/starvation.py
	$(BIN)/python bench/dialects.py
	$(BIN)/python bench/composite.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/orderbooks.py

# a whole exchange (~2,500 markets): tens of minutes each; addition.py ~45 min
bench-scale: $(STAMP) $(CHROMIUM)
	$(BIN)/python bench/run_events.py
	$(BIN)/python bench/check_status.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/addition.py
	$(BIN)/python bench/archive.py

clean:
	rm -rf $(VENV) $(LATEST) .dagster .dagster-prod .dagster-workers .market_data
