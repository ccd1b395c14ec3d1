# Two commands on a fresh machine: `make run` and `make test`. Each builds the venv it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench install clean browser

# `make run` needs only the service; `make test` adds the development tools.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/kms serve

test: $(DEV_STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The /ops page is tested in Debian's headless Chromium; install it where we can (root + apt).
browser:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) ; } || \
	  echo "note: /usr/bin/chromium is missing; the /ops page tests need it (apt-get install chromium)"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy kms models workers web bench

bench: $(DEV_STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .kms .pytest_cache .mypy_cache .ruff_cache
