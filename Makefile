# Ling Hub: `make run` starts the whole hub, `make test` runs the suite. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint format bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ling Hub needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python manage.py migrate --noinput
	exec $(BIN)/python manage.py runhub

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
