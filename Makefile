# The README's two commands: `make demo` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= out/demo

.PHONY: venv backend demo test test-fast bench bench-kernels soak validate clean

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 first: any other spec pulls the CUDA wheels (several GB).
	$(BIN)/pip install -q "numpy<2" torch==2.13.0
	$(BIN)/pip install -q -e ".[train,serve,kernels,test]" -e ./client
	touch $(STAMP)

venv: $(STAMP)

# Triton's onnxruntime backend for the wheel's CPU server (build/triton_backends); skipped when built
backend: $(STAMP)
	bash scripts/build_onnxruntime_backend.sh

demo: backend
	$(BIN)/python scripts/demo.py --out $(DEMO)

test: backend
	$(BIN)/lob validate model_repository
	$(BIN)/python -m pytest -q -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow and not server"

bench: backend
	bash bench/perf_analyzer.sh

# 30 min, 64 streaming symbols, kill -9 + restart every 5 min (not in CI): bench/soak/
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --out bench/soak

bench-kernels: $(STAMP)
	$(BIN)/python kernels/bench/bench_kernels.py

validate: $(STAMP)
	$(BIN)/lob validate model_repository

clean:
	rm -rf $(VENV) out build .pytest_cache
