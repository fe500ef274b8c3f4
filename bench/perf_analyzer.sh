#!/usr/bin/env bash
# `make bench`: perf_analyzer on the ensemble and the direct path (CPU profile) beside no-op floors of their
# topologies in one server; writes bench/results.md. Uses REPO (default build/model_repository, `lob export`);
# when it has no exported model, exports a random-initialised tiny run into out/bench/model_repository
# (throughput does not depend on the weights). Installs what the tritonclient 2.51.0 wheel's perf_analyzer
# links against: libb64 (apt) and libcudart (PyPI; no GPU used).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
REPO=${REPO:-build/model_repository}
DATA=${DATA:-out/bench/data}

if ! ldconfig -p | grep -q libb64.so.0d; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libb64-0d
fi
$BIN/python -c "import nvidia.cuda_runtime" 2>/dev/null || $BIN/pip install -q nvidia-cuda-runtime-cu12
CUDART=$($BIN/python -c "import nvidia.cuda_runtime, os; print(os.path.join(nvidia.cuda_runtime.__path__[0], 'lib'))")
export LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/$BIN:$PATH"

[ -d "$DATA" ] || $BIN/lob simulate --out "$DATA" --symbols 4 --days 1 --events-per-day 8000 --seed 3
if [ ! -f "$REPO/mamba_lob_onnx/1/model.onnx" ]; then
  echo "bench: $REPO has no exported model; exporting a random-initialised tiny run into out/bench/model_repository"
  $BIN/python bench/random_run.py --data "$DATA" --out out/bench/run
  $BIN/lob export --run out/bench/run --repo out/bench/model_repository
  REPO=out/bench/model_repository
fi
$BIN/python bench/run_bench.py --repo "$REPO" --data "$DATA" --out bench/results.md "$@"
