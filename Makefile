# Collaboration Bus: `make run` starts the bus, `make test` runs every test (installing what they need).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= data
PYTEST_ARGS ?=

.PHONY: run test install test-deps bench sdk-wheel clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/collab-bus: pyproject.toml sdk/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]' -e ./sdk
	@touch $@

install: $(BIN)/collab-bus  ## create the virtualenv and install the bus and the agent SDK

run: install  ## run the bus (API + worker + beat, in-memory broker, SQLite) on http://$(HOST):$(PORT)
	HOST=$(HOST) PORT=$(PORT) DATA_DIR=$(DATA_DIR) $(BIN)/collab-bus up

test-deps:  ## install the servers the tests start (redis-server, rabbitmq-server, postgresql) when missing
	@missing=; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install test-deps  ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install test-deps  ## run the benchmarks (end to end, and collaborate_with round trips; embedded and Redis)
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/collaborate.py

sdk-wheel: install  ## build the agent SDK's wheel into dist/ (pip install dist/aintandem_agent_sdk-*.whl in a container)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist ./sdk
	@ls dist/aintandem_agent_sdk-*.whl

clean:  ## remove the virtualenv, local data and built wheels
	rm -rf $(VENV) data dist
