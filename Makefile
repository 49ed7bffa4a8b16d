# The two commands: `make run` and `make test`. Each creates .venv on first use.
# `make image` builds the container image; `make image-check` builds and runs it (slow).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := .ci/constraints.txt

.PHONY: run test lint typecheck pytest bench demo image image-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/aep-flow-exporter serve

test: lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check exporter tests grafana deploy
	$(BIN)/ruff format --check exporter tests grafana deploy

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python -m tests.benchmarks

image:
	deploy/build-image

# Not in `make test`: a build takes one to three minutes (README "Container image").
image-check: $(VENV)/.installed-dev
	AEP_IMAGE_CHECK=1 $(BIN)/pytest tests/deploy/test_image.py

demo: $(VENV)/.installed-run
	$(BIN)/python -m exporter.demo --samples tests/fixtures

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
