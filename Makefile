# disentkit: `make demo` trains, evaluates and reports a small β-TCVAE (a β-VAE variant); `make test` runs the test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
DEMO   ?= runs/demo

.PHONY: venv dev demo test test-fast bench docs gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first so that pip takes the CPU build (an unpinned torch pulls a multi-GB CUDA build).
venv: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .

dev: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"

demo: venv
	$(BIN)/disentkit train --config demo --out $(DEMO) --overwrite
	$(BIN)/disentkit evaluate --checkpoint $(DEMO) --metrics mig --baseline
	$(BIN)/disentkit report --checkpoint $(DEMO)
	@echo "demo done: open $(DEMO)/report.html"

test: dev
	$(BIN)/python -m pytest -q

test-fast: dev
	$(BIN)/python -m pytest -q -m "not slow"

bench: dev
	$(BIN)/python benchmarks/run_all.py

# the API reference, generated from the docstrings by pdoc: docs/api/index.html
API_MODULES := disentkit disentkit.api disentkit.data disentkit.data.arrays disentkit.metrics disentkit.models \
               disentkit.train disentkit.train.run disentkit.train.checkpoint disentkit.train.config \
               disentkit.sweep disentkit.viz disentkit.evaluate disentkit.configs
docs: dev
	$(BIN)/pdoc $(API_MODULES) --docformat restructuredtext -o docs/api
	@echo "API reference: docs/api/index.html"

# on a CUDA machine (its own Python, e.g. the lent H200's: no venv needed): PASS/FAIL table, exit 1 on a FAIL
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
gpu-check:
	PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
