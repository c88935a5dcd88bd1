# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean mosquitto proto

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

mosquitto:
	@scripts/ensure-mosquitto.sh

demo: $(STAMP) mosquitto
	$(BIN)/mep-kubeedge-adapter demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) mosquitto lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Regenerate the AppLCM stubs after a change of mep_kubeedge_adapter/mecm/wire/lcmservice.proto.
proto: $(STAMP)
	$(BIN)/python -m mep_kubeedge_adapter.mecm.wire.codegen

bench: $(STAMP) mosquitto
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
