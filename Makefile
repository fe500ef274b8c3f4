# The README's two commands: `make demo` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= out/demo

.PHONY: venv demo test test-fast bench bench-step bench-kernels validate clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 first: any other spec pulls the CUDA wheels (several GB).
	$(BIN)/pip install -q "numpy<2" torch==2.13.0
	$(BIN)/pip install -q -e ".[train,serve,kernels,test]" -e ./client
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py --out $(DEMO)

test: $(STAMP)
	$(BIN)/lob validate model_repository
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow and not server"

bench: $(STAMP)
	bash bench/perf_analyzer.sh

# per-tick step cost to 1M ticks: Mamba, Transformer (full KV cache, ring), hybrid; writes bench/step_cost.{csv,png}
bench-step: $(STAMP)
	nice -n 5 $(BIN)/python bench/step_cost.py --out bench

bench-kernels: $(STAMP)
	$(BIN)/python kernels/bench/bench_kernels.py

validate: $(STAMP)
	$(BIN)/lob validate model_repository

clean:
	rm -rf $(VENV) out build .pytest_cache
