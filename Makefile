# Ling Hub: `make run` starts the whole hub, `make test` runs the suite. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two installs, each from its lock file (every package pinned with its hashes, docs/dependencies.md): what runs
# the hub (`make run`), and on top of it the tests and tools (`make test`, `make lint`).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip --disable-pip-version-check
# A lock is the whole closure, hashes included: pip takes it as it is (--no-deps: no resolving, a third less time),
# refuses any file whose hash is not locked, and `pip check` confirms every dependency is there.
PIP_INSTALL := $(PIP) install --quiet --require-hashes --no-deps
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
	--no-emit-find-links

.PHONY: setup setup-run run test lint format lock bench clean

$(RUN_STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ling Hub needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	$(PIP) check
	touch $(RUN_STAMP)

# The member client library (client/) is installed editable, without its dependencies (they are in the runtime
# lock): an editable install carries no hash.
$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt client/pyproject.toml
	$(PIP_INSTALL) -r requirements.txt -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e ./client
	$(PIP) check
	touch $(DEV_STAMP)

setup-run: $(RUN_STAMP)

setup: $(DEV_STAMP)

# runhub migrates the database itself and prints the first admin password last, once everything is up.
run: setup-run
	exec $(BIN)/python manage.py runhub

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Regenerate the lock files from requirements.in and requirements-dev.in (the direct dependencies, each with why
# it is there); the dev lock is constrained by the runtime one, so both agree on every shared package. Pins already
# locked are kept; LOCK_ARGS=--upgrade moves every package to its newest version, LOCK_ARGS='--upgrade-package X' one.
lock: setup
	$(PIP_COMPILE) $(LOCK_ARGS) --output-file requirements.txt requirements.in
	$(PIP_COMPILE) $(LOCK_ARGS) --output-file requirements-dev.txt requirements-dev.in

# Every benchmark with quick settings (a few minutes in all); each prints its command, the machine and its figures
# against a baseline measured in the same run. BENCH_DRAIN_ENV: e.g. `DATABASE_URL=postgres://… REDIS_URL=redis://…`
# for the drain's scaled configuration. docs/performance.md has the full-length runs.
bench: setup
	$(BIN)/python bench/route.py --seconds 3 --floors
	$(BENCH_DRAIN_ENV) $(BIN)/python bench/drain.py
	$(BIN)/python bench/bridge.py --seconds 2 --warmup 0.5 --users 16,64 --only relay,relay-2proc,embedded,2proc
	$(BIN)/python bench/idle.py --sockets 1000
	$(BIN)/python bench/dashboard.py --requests 20
	$(BIN)/python bench/poller.py --seconds 15
	$(BIN)/python bench/processes.py --servers uvicorn --runs 1
	$(BIN)/python bench/inbox.py --rounds 10
	$(BIN)/python bench/footprint.py --idle 20

# lint-imports checks the client library of this checkout too (client/src first on the path); the typecheck step
# is mypy, strict, on the client library (its settings: [tool.mypy] in client/pyproject.toml).
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	PYTHONPATH=client/src $(BIN)/lint-imports
	$(BIN)/mypy --strict --config-file client/pyproject.toml client/src/linghub

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var
