# Two commands for a newcomer: `make demo` and `make test`. Everything they need
# is installed here: a virtualenv in .venv, the control plane in ~/.cache/tfops.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help demo test bench lint format crds control-plane tools manifests manifests-stdout cluster clean

help:
	@echo "make demo           start a local control plane (or use \$$KUBECONFIG) and show it working"
	@echo "make test           lint, unit and integration tests (builds the control plane once)"
	@echo "make bench          benchmarks on the local control plane -> bench/results/"
	@echo "make control-plane  build etcd, kube-*, kwok, metrics-server into ~/.cache/tfops"
	@echo "make tools          build helm, promtool, prometheus and kube-score into ~/.cache/tfops"
	@echo "make manifests      render the chart into deploy/tfops.yaml (install without Helm)"
	@echo "make cluster        run the local control plane in the foreground until Ctrl-C"
	@echo "make crds           regenerate crds/ and the chart's copies (tests fail on drift)"
	@echo "make lint / format  ruff"

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tfops needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

control-plane:
	@bash hack/build-control-plane.sh >/dev/null

crds: $(INSTALLED)
	$(BIN)/python hack/generate.py

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd operator && ../$(BIN)/lint-imports --config ../pyproject.toml

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(INSTALLED) control-plane tools lint
	$(BIN)/pytest

tools:
	@bash hack/build-tools.sh >/dev/null

# The chart rendered for people without Helm (kubectl apply -f deploy/tfops.yaml).
HELM ?= $(shell bash hack/build-tools.sh)/helm
MANIFEST_ARGS := tfops charts/tfops --namespace tfops-system --kube-version 1.36.0
manifests:
	$(HELM) template $(MANIFEST_ARGS) > deploy/tfops.yaml

manifests-stdout:
	@$(HELM) template $(MANIFEST_ARGS)

# About 30 minutes: 50 latency samples; 100, 300 and 1000 ModelServers with
# model-state checks on, each with its raw-apply baseline, its gated floor and 10 idle
# resync cycles (24 minutes); the API server's CPU per status patch by CRD variant
# (3 minutes); then the leak detector and its baselines over the trace corpus (2).
bench: $(INSTALLED) control-plane
	$(BIN)/python -m bench.reconcile --latency-count 50 --scale-counts 100,300,1000 \
		--soak-cycles 10
	$(BIN)/python -m bench.crd_writes --objects 50 --rounds 40
	$(BIN)/python -m bench.memory_guard --per-family 12 --seed 7 --long-replay-rows 1000000

demo: $(INSTALLED)
	@if [ -z "$$KUBECONFIG" ]; then bash hack/build-control-plane.sh >/dev/null; fi
	$(BIN)/python hack/demo.py

cluster: $(INSTALLED) control-plane
	$(BIN)/tfops dev-cluster --workdir .tfops-dev

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .tfops-dev build dist
