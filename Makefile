# Two commands: `make demo` runs the main job, `make test` runs the suite.
# Both build .venv on a fresh machine with nothing but Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing later pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2

demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
