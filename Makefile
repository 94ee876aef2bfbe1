# featurebus — the two commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .featurebus
# Every package of the monorepo (a pyproject.toml with a [project] table), installed editable.
PACKAGES := $(shell for f in libs/*/pyproject.toml services/*/pyproject.toml; do \
	grep -q '^\[project\]' $$f && dirname $$f; done)
PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
# Packages installed with extras (package:extra): the SDK with its CLI, common with its DLQ tool.
EXTRAS := libs/sdk:cli libs/common:dlq
EDITABLE := $(foreach p,$(PACKAGES),-e '$(p)$(patsubst $(p):%,[%],$(filter $(p):%,$(EXTRAS)))')
STAMP := $(VENV)/.installed
DEV_TOOLS := pytest pytest-asyncio pytest-timeout ruff mypy types-jsonschema check-jsonschema==0.39.0 kubernetes-validate==1.37.0 testcontainers==4.15.0

.PHONY: setup run stop test test-containers lint docs clean

setup: $(STAMP)

$(STAMP): $(PYPROJECTS) deploy/local/requirements.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q $(EDITABLE) -r deploy/local/requirements.txt $(DEV_TOOLS)
	@touch $@

run: setup
	$(BIN)/python deploy/local/stack.py start --data-dir $(DATA_DIR)
	$(BIN)/python deploy/local/services.py start --data-dir $(DATA_DIR)
	@echo
	@echo "featurebus is up: REST API on http://127.0.0.1:8000 (logs in $(DATA_DIR)/logs)"
	@echo "admin API key (also in $(DATA_DIR)/admin-api-key): $$(cat $(DATA_DIR)/admin-api-key)"
	@echo "next: the curl walkthrough in README.md; 'make stop' stops everything"

stop:
	@test -x $(BIN)/python || { echo "nothing to stop (no $(VENV))"; exit 0; }
	-$(BIN)/python deploy/local/services.py stop --data-dir $(DATA_DIR)
	$(BIN)/python deploy/local/stack.py stop --data-dir $(DATA_DIR)

test: setup
	$(BIN)/python -m pytest

# The integration and end-to-end tests against genuine images under Docker (testcontainers:
# apache/kafka in KRaft mode, mongo, minio, a qdrant server) instead of the local stand-ins; where no
# Docker engine answers, the tests on the stack are skipped with the Docker error.
test-containers: setup
	FEATUREBUS_TEST_STACK=containers $(BIN)/python -m pytest -m "integration or e2e"

# docs/asyncapi.yaml and docs/topics.md, from the services' own topic declarations (a test checks them).
docs: setup
	$(BIN)/python docs/asyncapi.py

LINT_PATHS := libs services deploy tests bench examples docs conftest.py
STRICT := common sdk scan runtime registry

lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	@# strict on the libraries and the registry; the other services as they are
	$(BIN)/mypy --strict $(foreach p,$(STRICT),-p featurebus.$(p))
	$(BIN)/mypy $(foreach p,$(filter-out $(STRICT),$(foreach p,$(PACKAGES),$(notdir $(p)))),-p featurebus.$(p))

clean: stop
	rm -rf $(DATA_DIR)
