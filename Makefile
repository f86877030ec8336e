# Both targets build .venv from a bare python3 when it is missing and reuse it when present.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint test-all demo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,slurm]'
	@touch $(STAMP)

# Lint first: a style or undefined-name error fails fast, before minutes of tests.
test: lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check scaling tests benchmarks

# Everything CI runs: fast suite plus the slow and browser tests.
test-all: lint
	$(PY) -m pytest -q -m 'not gpu and not perf'

demo: $(STAMP)
	$(VENV)/bin/scaling demo

bench: $(STAMP)
	$(VENV)/bin/scaling bench

clean:
	rm -rf runs reports .pytest_cache
