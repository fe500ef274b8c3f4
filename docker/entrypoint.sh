#!/usr/bin/env bash
# Start Triton on the Mamba-LOB repository with one GPU profile, building first what it lacks:
#   gpu-onnx   mamba_lob_onnx/1/model.onnx (+ model_fp16.onnx), from the `lob export` output (nothing to build)
#   gpu-fp16   mamba_lob_trt_fp16/1/model.plan, built by `lob build-trt` for THIS GPU
#   gpu-bf16   mamba_lob_trt_bf16/1/model.plan, likewise
# Usage: lob-entrypoint [PROFILE] [extra tritonserver arguments...]
# An engine only runs on the GPU model and TensorRT version that built it: after moving the repository
# to another GPU, delete mamba_lob_trt_*/1/model.plan and it is rebuilt here.
set -euo pipefail

profile="${1:-gpu-fp16}"
shift || true
repo="${MODEL_REPOSITORY:-/models}"
max_batch="${LOB_TRT_MAX_BATCH:-4096}"

if [[ ! -f "$repo/mamba_lob_onnx/1/model.onnx" || ! -f "$repo/lob_tokenizer/1/tokenizer.json" ]]; then
  echo "lob-entrypoint: $repo has no exported model: run \`lob export --run RUN --repo build/model_repository\`" \
       "on the host and mount that repository at $repo" >&2
  exit 2
fi

case "$profile" in
  gpu-onnx) ;;
  gpu-fp16|gpu-bf16)
    precision="${profile#gpu-}"
    if [[ ! -f "$repo/mamba_lob_trt_$precision/1/model.plan" ]]; then
      lob build-trt --repo "$repo" --precision "$precision" --max-batch "$max_batch"
    fi ;;
  *)
    echo "lob-entrypoint: unknown profile '$profile': gpu-onnx | gpu-fp16 | gpu-bf16" \
         "(the cpu profile is \`lob serve\` on the host)" >&2
    exit 2 ;;
esac

lob validate "$repo"
# The models of the profile, composing models first: the launcher's table is the one list.
models=$(python3 -c "import sys; from lob.serving.launcher import PROFILES; print(*PROFILES[sys.argv[1]].models)" \
         "$profile")
load=()
for m in $models; do load+=("--load-model=$m"); done
# The gRPC State pool above the peak number of in-flight requests (the launcher's GRPC_STATE_POOL, as `lob serve`):
# defuses Triton's use-after-free under gRPC streaming (docs/upstream/triton-grpc-stream-uaf.md). A cap, not an
# allocation. An argument after the profile overrides it (Triton takes an option's last value).
pool=$(python3 -c "from lob.serving.launcher import GRPC_STATE_POOL; print(GRPC_STATE_POOL)")
# configs/gpu.pbtxt where a model has one (KIND_GPU step, tokenizer sized for the GPU), else config.pbtxt
# summary_latencies: p50/p99 queue and compute time on /metrics (the dashboard's panels), as `lob serve` does
exec tritonserver --model-repository="$repo" --model-control-mode=explicit --disable-auto-complete-config \
  --model-config-name=gpu --metrics-config=summary_latencies=true --grpc-infer-allocation-pool-size="$pool" \
  "${load[@]}" "$@"
