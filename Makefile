# The two set-up commands (see README): `make serve` and `make test`.
# Both create the virtualenv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: serve test test-serial lint clean

$(BIN)/c10k: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

serve: $(BIN)/c10k
	$(BIN)/c10k serve $(ARGS)

# Two pytest-xdist workers for the tests that wait on sockets and timeouts (most of them),
# then the ones marked `alone` (load generators, floods, scanners) one at a time; a phase
# that selects nothing (exit 5) is not a failure. `make test-serial` runs everything in one
# process (docs/ARCHITECTURE.md, "Tests").
test: $(BIN)/c10k
	@status=0; \
	$(BIN)/python -m pytest -n 2 -m "not alone" $(ARGS) || [ $$? -eq 5 ] || status=1; \
	$(BIN)/python -m pytest -m alone $(ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

test-serial: $(BIN)/c10k
	$(BIN)/python -m pytest $(ARGS)

lint: $(BIN)/c10k
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ruff check src tests fuzz scripts
	$(BIN)/ruff format --check src tests fuzz scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
