# SomaStream: `make up` brings up and runs the whole plane; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# apt-get needs root; a developer who is not root is asked for sudo.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help install browser stack-up stack-down stack-status topics db up down status lint format typecheck docs rules test test-unit bench load clean

help: ## List the targets and what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install SomaStream with its dev tools

browser: ## Install Debian's chromium, chromedriver and curl for the UI and README tests (if missing)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v curl >/dev/null \
	  || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver curl; }

stack-up: install ## Start Kafka (KRaft), Redis, PostgreSQL and Prometheus (installs them if missing)
	$(BIN)/soma stack up

stack-down: install ## Stop Kafka, Redis, PostgreSQL and Prometheus
	$(BIN)/soma stack down

stack-status: install ## Show what of the stack runs where
	$(BIN)/soma stack status

topics: stack-up ## Create the registered topics and report drift
	$(BIN)/soma topics apply

db: stack-up ## Apply the memory schema migrations to the main database and the replica
	$(BIN)/soma db upgrade

up: topics db ## Install everything, start the stack, apply topics and migrations, run the plane
	$(BIN)/soma up
	@$(BIN)/soma stack status
	@echo "dev token:  $(BIN)/soma token --tenant t1"
	@echo "try:        curl -s -XPOST localhost:8080/v1/session/message -H \"Authorization: Bearer \$$($(BIN)/soma token --tenant t1)\" -H 'content-type: application/json' -d '{\"message\":\"hello\"}'"

down: install ## Stop the gateway, the flows and the stack
	$(BIN)/soma down
	$(BIN)/soma stack down

status: install ## Show the plane and the stack
	@$(BIN)/soma status
	@$(BIN)/soma stack status

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install ## mypy over every package
	$(BIN)/mypy

docs: install ## Build the mkdocs site strictly
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

rules: stack-up ## Check and unit-test the alert rules with promtool (comes with the stack's Prometheus)
	cd infra/prometheus && promtool check rules alerts.yml && promtool test rules alerts_test.yml

test-unit: install ## Unit tests only (no servers needed)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: install browser lint typecheck docs stack-up rules ## Lint, typecheck, docs, alert rules, then every test against the real stack
	$(BIN)/soma topics apply
	$(BIN)/soma db upgrade
	$(BIN)/pytest $(PYTEST_ARGS)

bench: db ## Benchmarks: gateway ingest, write-through, flow scale-out, replication, replay and archives (each against a raw loop), recall cached vs uncached
	$(BIN)/python -m tests.bench.gateway_ingest
	$(BIN)/python -m tests.bench.write_through
	$(BIN)/python -m tests.bench.outbox_drain
	$(BIN)/python -m tests.bench.flow_scale
	$(BIN)/python -m tests.bench.replication
	$(BIN)/python -m tests.bench.replay
	$(BIN)/python -m tests.bench.recall

load: db ## The load test at the issue's size: 50,000 memory writes, 20 tenants, backend outage, kill -9
	SOMA_LOAD_EVENTS=50000 $(BIN)/pytest tests/load -p no:cacheprovider --timeout 5400

clean: ## Remove build and cache folders (keeps the stack's data)
	rm -rf site build .pytest_cache .mypy_cache .ruff_cache
