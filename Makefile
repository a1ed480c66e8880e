# One place for tooling. `make demo` and `make test` set everything up on a fresh machine:
# the project's virtualenv (.venv, Python 3.13), a small one for the embedded PostgreSQL (.venv-pg:
# pgserver ships no Python 3.13 wheel), and, for the SAM checks, the SAM CLI in its own .venv-sam.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
# pyenv's real interpreters first: its shims exist for every version but fail unless that version is active.
find_python = $(firstword $(wildcard $(PYENV_ROOT)/versions/$(1)*/bin/python$(1)) $(filter-out %/shims/python$(1),$(shell command -v python$(1) 2>/dev/null)))
PYTHON313 ?= $(or $(call find_python,3.13),python3)
PYTHON312 ?= $(or $(call find_python,3.12),$(call find_python,3.11),python3)

VENV := .venv
BIN := $(VENV)/bin
PIP_FLAGS := --disable-pip-version-check -q

.PHONY: bench help setup demo test test-localstack lint format typecheck unit integration sam-validate sam-build clean local-up local-down

help:
	@echo "make demo      set up and run the main job on the embedded default (moto server + embedded PostgreSQL)"
	@echo "make test      set up and run lint, type checks, template checks and all tests"
	@echo "make test-localstack  the live-path and acceptance tests again on LocalStack (part of make test)"
	@echo "make lint | typecheck | unit | integration | sam-validate | sam-build | clean"

$(BIN)/.installed: requirements/dev.txt pyproject.toml
	$(PYTHON313) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -r requirements/dev.txt
	$(BIN)/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

.venv-pg/.installed: requirements/pgserver.txt
	$(PYTHON312) -m venv .venv-pg
	.venv-pg/bin/pip install $(PIP_FLAGS) -r requirements/pgserver.txt
	touch $@

setup: $(BIN)/.installed .venv-pg/.installed

# The main job on the embedded default: a fresh local stack provisioned from template.yaml; the sample's
# messy media uploaded the way Django would, plus a staging upload of local files (a nested scrape with its
# audit CSV, a MEDIA_ROOT); the plan shows the mess; the live path settles it
# (normalize -> replicate -> link, in-process handlers on the SQS queues); verify; then a backfill of what
# the live path cannot see (rows pointing at missing keys, legacy files), its report line, and verify again.
DEMO_ENV = set -e; eval "$$($(BIN)/mediacanon local env)"; export MEDIACANON_CONFIG=sample/mediamap.yaml
demo: setup
	MEDIACANON_CONFIG=sample/mediamap.yaml $(BIN)/mediacanon local up --fresh
	$(DEMO_ENV); $(BIN)/mediacanon check-config; \
	$(BIN)/python sample/manage.py migrate --verbosity 0; \
	$(BIN)/python sample/manage.py generate_archive --count 300 --seed 42; \
	echo "== staging uploads: a nested scrape with its audit CSV, and a MEDIA_ROOT that never reached S3"; \
	staging="$${MEDIACANON_STATE_DIR:-.local}/staging"; \
	$(BIN)/python sample/manage.py generate_staging --out "$$staging" --count 40 --seed 7; \
	$(BIN)/mediacanon upload "$$staging/scrape/downloads" --manifest "$$staging/scrape/audit.csv" --report "$$staging/scrape-outcomes.csv"; \
	$(BIN)/mediacanon upload --from-media-root "$$staging/media" --report "$$staging/media-root-outcomes.csv"; \
	echo "== the same staging upload again: nothing left to upload"; \
	set -o pipefail; $(BIN)/mediacanon upload "$$staging/scrape/downloads" --manifest "$$staging/scrape/audit.csv" | tail -n 1; \
	echo "== the plan (dry run) before the live path"; $(BIN)/mediacanon plan --limit 25; \
	echo "== the live path"; $(BIN)/mediacanon local run --until-idle; \
	echo "== verify after the live path"; $(BIN)/mediacanon verify; \
	echo "== backfill"; $(BIN)/mediacanon backfill; \
	echo "== verify after the backfill"; $(BIN)/mediacanon verify

test: setup lint typecheck sam-validate sam-build cfn-lint checkov
	$(BIN)/pytest
	$(MAKE) --no-print-directory acceptance-django6
	$(MAKE) --no-print-directory test-localstack

unit: setup .venv-sam/.installed
	$(BIN)/pytest tests/unit

integration: setup .venv-sam/.installed
	$(BIN)/pytest tests/integration

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The SAM CLI lives in its own virtualenv. pyenv's `python3.13` shim only runs when 3.13 is the active
# version; $(PYTHON313) is a real interpreter (see find_python), and sam build wants its directory on PATH.
SAM_PYTHON = $(shell $(PYTHON313) -c 'import sys; print(sys.executable)')
SAM := SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam

.venv-sam/.installed: requirements/sam.txt
	$(SAM_PYTHON) -m venv .venv-sam
	.venv-sam/bin/pip install $(PIP_FLAGS) -r requirements/sam.txt
	touch $@

# Neither needs AWS credentials; `sam validate` without --lint only needs a region to build its client.
sam-validate: .venv-sam/.installed
	$(SAM) validate --lint
	$(SAM) validate --region us-east-1

# No container: `sam build` runs pip for the python3.13 runtime, so a python3.13 must come first on PATH.
sam-build: .venv-sam/.installed
	PATH="$(dir $(SAM_PYTHON)):$$PATH" $(SAM) build

# cfn-lint on its own (sam validate --lint runs it too, with the SAM CLI's pins): the project's pinned cfn-lint.
.PHONY: cfn-lint
cfn-lint: $(BIN)/.installed
	$(BIN)/cfn-lint --regions us-east-1 -- template.yaml

# checkov, a security linter, in its own virtualenv: its pins conflict with the project's (requirements/checkov.txt).
# Settings and every skipped check, with its reason, in .checkov.yaml. About 20 s to install, 10 s to run.
.venv-checkov/.installed: requirements/checkov.txt
	$(SAM_PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install $(PIP_FLAGS) -r requirements/checkov.txt
	touch $@

.PHONY: checkov
checkov: .venv-checkov/.installed
	.venv-checkov/bin/checkov --config-file .checkov.yaml

# LocalStack (community edition, host mode: no Docker), the second emulator, in its own virtualenv: its pins
# (boto3, moto-ext, cryptography...) conflict with the project's (requirements/localstack.txt). About 90 s to install.
.venv-localstack/.installed: requirements/localstack.txt
	$(SAM_PYTHON) -m venv .venv-localstack
	.venv-localstack/bin/pip install $(PIP_FLAGS) -r requirements/localstack.txt
	touch $@

# The suites that run on the live path's services alone (S3, SQS, EventBridge) again on LocalStack, which the
# fixtures start (tests/localstack.py): where it and moto disagree, tests/integration/test_emulators.py says which
# one AWS follows. Its Step Functions and Lambda are not used (the backfill's executor is mediacanon.local.sfnlocal's).
LOCALSTACK_SUITES := tests/integration/test_emulators.py tests/integration/test_live_path.py tests/acceptance
test-localstack: setup .venv-localstack/.installed
	$(BIN)/pytest $(LOCALSTACK_SUITES) --emulator=localstack

local-up: setup
	$(BIN)/mediacanon local up

local-down: $(BIN)/.installed
	$(BIN)/mediacanon local down

# Benchmarks, not part of `make test`: mediacanon beside aws s3 sync, rclone and Django's save()/bulk_update, in one
# run on one moto server and one PostgreSQL (bench/README.md); writes bench/RESULTS.md. BENCH_ARGS="--objects 2000 --rows 10000"
# for a shorter run.
# Then the scale benchmark (bench/scale.py, ~1 h): a 100,000-object backfill's requests per object and per row, its
# peak memory against 10,000 objects, and the 10 M-object model computed from them; it regenerates docs/scale.md.
# SCALE_ARGS="--objects 20000 --baseline 2000" for a shorter one.
# Then the live path under load (bench/live.py, local runner) and, from its figures, the same path on AWS as a model
# (bench/live_model.py, ~3 min): the batching window and BatchSize it chooses are template.yaml's (bench/results/live-model.md).
# Last, the live handlers' cold start against `import boto3; boto3.client("s3")` (bench/cold_start.py, ~3 min):
# RESULTS.json "live" cold_start_ratio and bench/results/cold-start.md. COLD_ARGS="--runs 3" for a shorter one.
BENCH_ARGS ?=
SCALE_ARGS ?=
COLD_ARGS ?=
bench: setup
	$(BIN)/python bench/bench.py $(BENCH_ARGS)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)
	$(BIN)/python bench/live.py $(LIVE_ARGS)
	$(BIN)/python bench/live_model.py
	$(BIN)/python bench/cold_start.py $(COLD_ARGS)

clean: local-down
	rm -rf .local .aws-sam

# The acceptance tests (real Django projects: tests/acceptance) again under the newest Django 6.x, beside the
# project's Django 5.2 LTS: .venv-django6 is requirements/dev.txt with Django overridden by requirements/django6.txt
# (Django 6 needs Python >= 3.12; $(PYTHON313) is the project's interpreter).
.venv-django6/.installed: requirements/dev.txt requirements/django6.txt pyproject.toml
	$(PYTHON313) -m venv .venv-django6
	.venv-django6/bin/pip install $(PIP_FLAGS) -r requirements/dev.txt
	.venv-django6/bin/pip install $(PIP_FLAGS) -r requirements/django6.txt
	.venv-django6/bin/pip install $(PIP_FLAGS) --no-deps -e .
	touch $@

.PHONY: acceptance-django6
acceptance-django6: .venv-django6/.installed .venv-pg/.installed
	.venv-django6/bin/pytest tests/acceptance

# The long reliability run: 1,000 random schedules per property test (live path; live path + backfill) with
# duplicates, reorders, concurrent workers and crashes at every step boundary, each checked against I1-I5.
# CI runs the same tests derandomized with 50 examples each (HYPOTHESIS_PROFILE=ci, the default).
.PHONY: reliability-long
reliability-long: setup
	HYPOTHESIS_PROFILE=long $(BIN)/pytest tests/property -k schedules_keep_every_invariant -p no:cacheprovider --hypothesis-show-statistics
