# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean mosquitto wrk package manifests proto

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

mosquitto:
	@scripts/ensure-mosquitto.sh

wrk:
	@scripts/ensure-wrk.sh

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

# EdgeGallery app packages (CSAR) of the adapter and the sample app, and their Helm charts, in
# dist/. The APPDs name the adapter's per-node serNames: list your edge nodes, e.g.
#   make package PACKAGE_NODES="edge-node-1 edge-node-2" IMAGE_REGISTRY=registry.example:5000 IMAGE_PROJECT=mec
# Two builds of one commit are byte-identical (file times are the commit's time).
PACKAGE_NODES  ?= edge-node-1
IMAGE_REGISTRY ?=
IMAGE_PROJECT  ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
package: $(STAMP)
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN)/python -m mep_kubeedge_adapter.packaging build \
	  --out dist $(foreach node,$(PACKAGE_NODES),--node $(node)) \
	  --image-registry "$(IMAGE_REGISTRY)" --image-project "$(IMAGE_PROJECT)"

# Rewrite the kustomize files generated from the Helm charts (manifests/base, the lab sample app).
manifests: $(STAMP)
	$(BIN)/python -m mep_kubeedge_adapter.packaging manifests --out manifests

# Regenerate the AppLCM stubs after a change of mep_kubeedge_adapter/mecm/wire/lcmservice.proto.
proto: $(STAMP)
	$(BIN)/python -m mep_kubeedge_adapter.mecm.wire.codegen

# All figures, or some: make bench BENCH=B3,B7 (a comma-separated list); the others stay in the
# report as they were.
BENCH ?=
bench: $(STAMP) mosquitto wrk
	$(BIN)/python -m benchmarks $(if $(BENCH),--only $(BENCH))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist
