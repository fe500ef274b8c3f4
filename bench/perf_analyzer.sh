#!/usr/bin/env bash
# `make bench`: perf_analyzer on lob_stream (CPU profile) beside its no-op floor; writes bench/results.md.
# Needs an exported repository (`lob export --run RUN`, into build/model_repository). Installs what the
# tritonclient 2.51.0 wheel's perf_analyzer links against: libb64 (apt) and libcudart (PyPI; no GPU used).
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

[ -d "$DATA" ] || $BIN/lob simulate --out "$DATA" --symbols 4 --days 1 --events-per-day 4000 --seed 3
$BIN/python bench/run_bench.py --repo "$REPO" --data "$DATA" --out bench/results.md "$@"
