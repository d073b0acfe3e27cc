# The two commands a new user runs: `make demo` and `make test`. Everything they need
# (virtual environments, LocalStack, migrations) is set up here, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13: a plain `python3.13`, or pyenv's build when its shim is not selected.
PY313 := $(shell for c in python3.13 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null); do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 && { echo "$$c"; break; }; done)
VENV := .venv
PY := $(abspath $(VENV))/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv up down demo test test-fast soak bench lint clean

help:
	@echo "make demo   - set up everything, run the main job end to end on LocalStack, print the result"
	@echo "make test   - set up what tests need and run the whole suite"
	@echo "make up     - start LocalStack, deploy infra/template.yaml, keep it running (make down stops it)"
	@echo "make bench  - run the benchmarks (engine vs raw pyarrow vs peers)"
	@echo "make soak   - the long local-stack runs (a 2,500-batch job through the Map)"
	@echo "make lint   - ruff and mypy"

$(STAMP): pyproject.toml
	@test -n "$(PY313)" || { echo "error: Python 3.13 is required (python3.13 on PATH, or pyenv install 3.13)"; exit 1; }
	@echo "==> creating $(VENV) with $(PY313)"
	@test -x $(VENV)/bin/python || $(PY313) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	@$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

up: venv
	@$(PY) infra/local/project.py up

down:
	@if [ -x $(PY) ]; then $(PY) infra/local/stack.py down; else echo "nothing to stop"; fi

demo: venv
	@$(PY) infra/local/demo.py $(if $(KEEP),--keep,)

test: venv
	@$(PY) -m pytest $(PYTEST_ARGS)

soak: venv
	@$(PY) -m pytest -m soak -s tests/e2e $(PYTEST_ARGS)

test-fast: venv
	@$(PY) -m pytest tests/unit tests/functional $(PYTEST_ARGS)

bench: venv
	@$(PY) -m pip install -q -e '.[dev,bench]'
	@$(PY) bench/run.py $(BENCH_ARGS)
	@$(PY) bench/api.py $(BENCH_API_ARGS)

lint: venv
	@$(VENV)/bin/ruff check layers functions tests infra bench
	@$(VENV)/bin/mypy layers/datalake/datalake functions/api/datalake_api

clean: down
	rm -rf $(VENV) .datalake
