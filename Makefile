# Two commands: `make demo` runs the main job, `make test` runs the suite.
# Both build .venv on a fresh machine with nothing but Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean bench sysdeps plugin

# Debian packages outside pip: the Cortex-M deploy tests (cross gcc, newlib, QEMU) and the search tests (PostgreSQL;
# the report tests will add chromium). A package counts as present when dpkg has it installed or its program is on
# PATH, so a machine that has them all runs no apt at all. Missing ones are installed only as root; otherwise,
# or when apt fails (no network), the list is printed and the tests that need them fail naming the package.
SYSDEPS := gcc-arm-none-eabi:arm-none-eabi-gcc libnewlib-arm-none-eabi: qemu-system-arm:qemu-system-arm \
	postgresql:pg_ctl

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing later pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

sysdeps:
	@missing=""; for pair in $(SYSDEPS); do pkg=$${pair%%:*}; cmd=$${pair#*:}; \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'ok installed' && continue; \
	  [ -n "$$cmd" ] && command -v $$cmd >/dev/null 2>&1 && continue; \
	  missing="$$missing $$pkg"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends$$missing; } \
	  || echo "sysdeps: apt-get could not install$$missing; the tests that need them will fail naming them"; \
	else echo "sysdeps: missing Debian packages:$$missing (as root: apt-get install --no-install-recommends$$missing)"; fi

# The QEMU instruction-counting plugin, built with the host gcc into ~/.cache/nntailor (rebuilt when its source
# changes); the same function builds it on first use. A missing tool is reported, and the tests name it again.
plugin: $(STAMP) sysdeps
	-@$(PY) -c "from nntailor.deploy.cortexm import plugin_path; print('plugin:', plugin_path())"

test: $(STAMP) lint sysdeps plugin
	$(PY) -m pytest -q -n 2

demo: $(STAMP)
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
