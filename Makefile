# The two set-up commands (see README): `make serve` and `make test`.
# Both create the virtualenv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: serve test lint clean

$(BIN)/c10k: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

serve: $(BIN)/c10k
	$(BIN)/c10k serve $(ARGS)

# Two workers (pytest-xdist): most tests wait on sockets and server timeouts, not the CPU,
# so two at a time halve the run on this 2-core box (docs/ARCHITECTURE.md, Tests).
test: $(BIN)/c10k
	$(BIN)/python -m pytest -n 2 $(ARGS)

lint: $(BIN)/c10k
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ruff check src tests fuzz scripts
	$(BIN)/ruff format --check src tests fuzz scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
