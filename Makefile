# The README's two commands: `make demo` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The client alone, as a quant installs it: its wheel beside the newest numpy 2, tritonclient, protobuf, grpcio
CLIENT_VENV := .venv-client
CLIENT_STAMP := $(CLIENT_VENV)/.installed
CLIENT_DEPS := $(CLIENT_VENV)/.deps
DEMO ?= out/demo
# make demo-real [ZIP=LOBSTER zip, default scripts/demo_real.py's] [STEPS=N DEEPLOB_STEPS=N: quick checks only]
DEMO_REAL ?= out/demo-real

.PHONY: venv client-venv backend demo demo-real test test-fast bench bench-step bench-kernels gpu-check soak validate clean system-packages

# Real proxies, stores and monitoring the scale-out and Prometheus tests start: Debian packages, installed with apt when missing
# (as root or with sudo); without them those tests skip and say why.
SYSTEM_PACKAGES := nginx:nginx redis-server:redis-server prometheus:prometheus tmux:tmux

$(STAMP): pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch==2.13.0 first: any other spec pulls the CUDA wheels (several GB).
	$(BIN)/pip install -q "numpy<2" torch==2.13.0
	$(BIN)/pip install -q -e ".[train,serve,kernels,test]" -e "./client[redis]"
	touch $(STAMP)

venv: $(STAMP)

# numpy first, as in a user's environment: installing the wheel must keep numpy 2 (tests/integration/test_client_env.py).
# The venv is made anew when client/pyproject.toml changes; a change to the client's sources only rebuilds and
# reinstalls the wheel (same version number: uninstalled first), its dependencies already there.
$(CLIENT_DEPS): client/pyproject.toml
	rm -rf $(CLIENT_VENV)
	$(PY) -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/pip install -q --upgrade pip
	$(CLIENT_VENV)/bin/pip install -q "numpy>=2"
	$(CLIENT_VENV)/bin/pip install -q "pytest>=8" "pytest-timeout>=2" mypy
	touch $(CLIENT_DEPS)

$(CLIENT_STAMP): $(CLIENT_DEPS) $(shell find client/lobclient client/lobtick -name '*.py' -o -name py.typed)
	rm -rf client/build build/client-wheel
	$(CLIENT_VENV)/bin/pip wheel -q --no-deps -w build/client-wheel ./client
	rm -rf client/build
	$(CLIENT_VENV)/bin/pip uninstall -q -y lobclient
	$(CLIENT_VENV)/bin/pip install -q build/client-wheel/lobclient-*.whl
	touch $(CLIENT_STAMP)

client-venv: $(CLIENT_STAMP)

# Triton's onnxruntime backend for the wheel's CPU server (build/triton_backends); skipped when built
backend: $(STAMP)
	bash scripts/build_onnxruntime_backend.sh

demo: backend
	$(BIN)/python scripts/demo.py --out $(DEMO)

demo-real: backend
	$(BIN)/python scripts/demo_real.py --out $(DEMO_REAL) $(if $(ZIP),--zip $(ZIP)) \
	  $(if $(STEPS),--steps $(STEPS)) $(if $(DEEPLOB_STEPS),--deeplob-steps $(DEEPLOB_STEPS))

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null || test -x /usr/sbin/$$bin || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo -n"; else sudo=none; fi; \
	  if [ "$$sudo" = none ]; then echo "warning: not installed:$$missing (needs root); their tests skip"; \
	  else $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing \
	       || echo "warning: apt-get could not install$$missing; their tests skip"; fi; fi

test: backend system-packages client-venv
	$(BIN)/lob validate model_repository
	@for py in $(BIN)/python $(CLIENT_VENV)/bin/python; do \
	  echo "lobclient environment: $$(env -u PYTHONPATH $$py tests/integration/client_driver.py --versions)"; done
	LOB_CLIENT_PYTHON=$(CLIENT_VENV)/bin/python $(BIN)/python -m pytest -q -ra --durations=30

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=30 -m "not slow and not server"

bench: backend
	bash bench/perf_analyzer.sh

# 30 min, 64 streaming symbols, kill -9 + restart every 5 min (not in CI): bench/soak/
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --out bench/soak

# per-tick step cost to 1M ticks: Mamba, Transformer (full KV cache, ring), hybrid; writes bench/step_cost.{csv,png}
bench-step: $(STAMP)
	nice -n 5 $(BIN)/python bench/step_cost.py --out bench

bench-kernels: $(STAMP)
	$(BIN)/python kernels/bench/bench_kernels.py

# On a lent GPU machine's image, from a plain checkout (nothing installed; docs/gpu.md): kernels, mixed precision and
# step throughput in one bounded run. CPU=1: the CPU mode (tiny shapes, Triton's interpreter; make test runs it too)
GPU_OUT ?= out/gpu-check
gpu-check:
	$(PY) scripts/gpu_check.py --out $(GPU_OUT) $(if $(CPU),--cpu)

validate: $(STAMP)
	$(BIN)/lob validate model_repository

clean:
	rm -rf $(VENV) $(CLIENT_VENV) out build .pytest_cache
