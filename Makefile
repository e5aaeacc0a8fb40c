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

# One process. `make test ARGS="-n 2"` runs two pytest-xdist workers, about half the time
# on this 2-core box, but is not yet the default: each run in two workers so far has found
# a test that fails only beside another (docs/ARCHITECTURE.md, Tests).
test: $(BIN)/c10k
	$(BIN)/python -m pytest $(ARGS)

lint: $(BIN)/c10k
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/ruff check src tests fuzz scripts
	$(BIN)/ruff format --check src tests fuzz scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info
