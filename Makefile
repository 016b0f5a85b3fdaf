# SomaStream: `make up` brings up and runs the whole plane; `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install stack-up stack-down stack-status topics db up down status lint format typecheck docs test test-unit bench clean

help: ## List the targets and what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install SomaStream with its dev tools

stack-up: install ## Start Kafka (KRaft), Redis and PostgreSQL (installs them if missing)
	$(BIN)/soma stack up

stack-down: install ## Stop Kafka, Redis and PostgreSQL
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

test-unit: install ## Unit tests only (no servers needed)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: install lint typecheck docs stack-up ## Lint, typecheck, docs, then every test against the real stack
	$(BIN)/soma topics apply
	$(BIN)/soma db upgrade
	$(BIN)/pytest $(PYTEST_ARGS)

bench: db ## Benchmarks: gateway ingest and write-through, each against a raw confluent-kafka loop; latencies
	$(BIN)/python -m tests.bench.gateway_ingest
	$(BIN)/python -m tests.bench.write_through

clean: ## Remove build and cache folders (keeps the stack's data)
	rm -rf site build .pytest_cache .mypy_cache .ruff_cache
