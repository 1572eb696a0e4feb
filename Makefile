# admuse — run `make help` for the targets.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
export ADMUSE_VENV := $(VENV)
PY := $(VENV)/bin/python
KAFKA := PYTHON=$(PY) deploy/kafka/kafka.sh

.DEFAULT_GOAL := help

.PHONY: help install lock proto demo chaos test test-unit lint format kafka-up kafka-down kafka-logs kafka-status bench clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## Create this checkout's environment (.venv, from deploy/lock/) and install admuse
	@deploy/install.sh
	@$(MAKE) --no-print-directory proto

EXTRAS := --extra ingestion --extra features --extra trainer --extra inference --extra simulator \
  --extra report --extra console --extra bench --extra dev
lock: ## Re-resolve deploy/lock/{cpu,gpu}.txt from pyproject.toml's ranges (then commit them)
	@for v in cpu gpu; do uv pip compile pyproject.toml $(EXTRAS) --extra onnx-$$v --generate-hashes \
	  --universal --python-version 3.11 --no-header -q -o deploy/lock/$$v.txt || exit 1; done

proto: ## Generate gRPC code from proto/ (never edited by hand)
	@# -I<virtual>=<dir>: modules land in services/inference/generated/admuse/v1 and import
	@# each other by that full package path, so no sys.path tricks are needed.
	@if [ -d proto/admuse ] && [ -n "$$(ls proto/admuse/v1/*.proto 2>/dev/null)" ]; then \
	  $(PY) -m grpc_tools.protoc -Iservices/inference/generated=proto --python_out=. \
	    --grpc_python_out=. --pyi_out=. proto/admuse/v1/*.proto; fi

demo: install ## The main job: broker, services, console, simulator, report (DEMO_ARGS=--keep: console stays up)
	@PATH=$(VENV)/bin:$$PATH $(VENV)/bin/admuse demo $(DEMO_ARGS)

chaos: install ## The fault suite: faults under load, then the books (CHAOS_ARGS="--cycles 20")
	@PATH=$(VENV)/bin:$$PATH $(PY) -m services.chaos $(CHAOS_ARGS)

test: install ## Lint, then every test (unit, integration, e2e) against a fresh real Kafka broker
	@$(MAKE) --no-print-directory lint
	@deploy/test.sh $(PYTEST_ARGS)

test-unit: install ## Unit tests only (no broker)
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: ## ruff check + format check + layer contracts (import-linter, pyproject.toml)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports --no-cache

format: ## ruff format + autofix
	@$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

kafka-up: install ## Start the Kafka broker (127.0.0.1:9092, data in .run/kafka)
	@$(KAFKA) up

kafka-down: ## Stop the Kafka broker
	@$(KAFKA) down

kafka-logs: ## Print the broker log
	@$(KAFKA) logs

kafka-status: ## Is the broker running?
	@$(KAFKA) status

bench: install ## Run the benchmarks in bench/ (see bench/RESULTS.md)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove run folders (not the environment or the jar cache)
	rm -rf .run .pytest_cache
