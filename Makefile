# Collaboration Bus: `make run` starts the bus, `make test` runs every test (installing what they need).
# Both install from the locks in requirements/ (exact versions with hashes); `make lock` refreshes them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= data
PYTEST_ARGS ?=
BENCH_ARGS ?=
# `make lock LOCK_ARGS=` keeps the current pins and only adds what pyproject.toml now asks for;
# `make lock LOCK_ARGS='--upgrade-package celery'` moves one package.
LOCK_ARGS ?= --upgrade
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK := requirements/test.txt
PIP := $(BIN)/python -m pip

.PHONY: run test install install-test lock test-deps lint bench sdk-wheel clean help ui ui-check

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The stamps say what the virtualenv holds; each is remade when its lock (or a pyproject.toml) changes.
$(VENV)/.runtime-installed: $(RUNTIME_LOCK) pyproject.toml sdk/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(RUNTIME_LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e . -e ./sdk
	@touch $@

$(VENV)/.test-installed: $(VENV)/.runtime-installed $(TEST_LOCK)
	$(PIP) install --quiet --require-hashes -r $(TEST_LOCK)
	@touch $@

install: $(VENV)/.runtime-installed  ## create the virtualenv: the bus and the agent SDK with their runtime dependencies
install-test: $(VENV)/.test-installed  ## install (above) plus the test tools (pytest, schemathesis, pyyaml)

lock:  ## refresh requirements/*.txt from pyproject.toml (newest versions it allows, hashed); review the diff
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  { echo "the locks are for Python 3.11 (found $$($(PYTHON) --version)): make lock PYTHON=python3.11"; exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && "$$tmp/bin/python" -m pip install --quiet 'pip-tools>=7.4,<8' && \
	unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT && export PIP_CONFIG_FILE=/dev/null \
	  CUSTOM_COMPILE_COMMAND="make lock" && \
	compile="$$tmp/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS)" && \
	$$compile -o $(RUNTIME_LOCK) pyproject.toml sdk/pyproject.toml requirements/runtime.in && \
	$$compile --extra test -c $(RUNTIME_LOCK) -o $(TEST_LOCK) pyproject.toml sdk/pyproject.toml requirements/runtime.in
	@echo "wrote $(RUNTIME_LOCK) and $(TEST_LOCK)"


run: install  ## run the bus (API + worker + beat, in-memory broker, SQLite) on http://$(HOST):$(PORT), runtime only
	HOST=$(HOST) PORT=$(PORT) DATA_DIR=$(DATA_DIR) $(BIN)/collab-bus up

test-deps:  ## install the servers the tests start (redis-server, rabbitmq-server, postgresql, docker.io, busybox-static and mmdebstrap for managed sandboxes, docker-compose for the Compose files, chromium for the GUI's browser tests, prometheus for promtool, haproxy for the balancer tests) when missing
	@missing=; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v dockerd >/dev/null 2>&1 || missing="$$missing docker.io"; \
	test -x /bin/busybox || missing="$$missing busybox-static"; \
	command -v mmdebstrap >/dev/null 2>&1 || missing="$$missing mmdebstrap"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	test -x /usr/lib/chromium/chromium || missing="$$missing chromium"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: install-test  ## ruff on every Python file (rules in pyproject.toml) and mypy --strict on the agent SDK
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy sdk/aintandem_agent_sdk

test: install-test test-deps lint ui-check  ## lint, then the GUI's checks, then every test (installs the test tools from requirements/test.txt)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

ui/node_modules/.package-lock.json: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund --loglevel=error

ui: ui/node_modules/.package-lock.json install  ## rebuild the web GUI (ui/ -> app/ui_dist, committed: `make run` needs no Node.js) and its API types
	$(BIN)/python scripts/ui_bundle.py openapi ui/openapi.json
	cd ui && npm run --silent gen:api && npm run --silent build

ui-check: ui/node_modules/.package-lock.json install  ## the GUI's type check and Vitest suite, and that the committed bundle and API types are what the sources build
	cd ui && npm run --silent typecheck && npm test --silent
	$(BIN)/python scripts/ui_bundle.py check

bench: install-test test-deps  ## run every benchmark (bench/run_all.py: throughput, batch, latency, fanout, scaling, sockets, collaborate) and write bench/results.md; BENCH_ARGS=--quick for small sizes
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

sdk-wheel: install  ## build the agent SDK's wheel into dist/ (pip install dist/aintandem_agent_sdk-*.whl in a container)
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist ./sdk
	@ls dist/aintandem_agent_sdk-*.whl

clean:  ## remove the virtualenv, local data and built wheels
	rm -rf $(VENV) data dist
