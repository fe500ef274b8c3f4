"""Every lobkernels kernel compiles to a cubin for an H100 (sm_90) and an A100 (sm_80), with all optional inputs
and with none, without a GPU: the interpreter used by the other kernel tests never runs Triton's compiler, so type
or layout errors that only compilation finds would otherwise first show on a GPU machine."""

import json
import os
import subprocess
import sys

# Runs in a fresh process: these tests' own process imports lobkernels under the interpreter.
COMPILE_ALL = r"""
import inspect, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lobkernels import causal_conv, selective_scan, state_update

KERNELS = {
    "selective_scan_fwd": (selective_scan._selective_scan_fwd_kernel, dict(CHUNK=32, BLOCK_D=32, BLOCK_N=16)),
    "selective_scan_bwd": (selective_scan._selective_scan_bwd_kernel, dict(CHUNK=32, BLOCK_D=32, BLOCK_N=16)),
    "selective_state_update": (state_update._selective_state_update_kernel, dict(BLOCK_DIM=32, BLOCK_N=16)),
    "causal_conv1d_update": (causal_conv._causal_conv1d_update_kernel, dict(WIDTH=4, BLOCK_DIM=64, BLOCK_STATE=4)),
}
# Pointers that may be None (an optional input absent), per kernel; the flag constexprs say which are present.
OPTIONAL_PTRS = {"D_ptr", "z_ptr", "bias_ptr", "init_ptr", "dlast_ptr", "dz_ptr", "dD_ptr", "dbias_ptr", "dinit_ptr",
                 "dt_bias_ptr", "idx_ptr"}
INT_PTRS = {"idx_ptr": "*i64"}
results = {}
for arch in (90, 80):
    for name, (kernel, sizes) in KERNELS.items():
        for present in (True, False):
            params = inspect.signature(kernel.fn).parameters
            signature, constexprs = {}, {}
            for i, (p, param) in enumerate(params.items()):
                if p in sizes:
                    signature[p], constexprs[(i,)] = "constexpr", sizes[p]
                elif param.annotation is not inspect.Parameter.empty:  # a flag: HAS_*, DELTA_SOFTPLUS, SILU...
                    signature[p], constexprs[(i,)] = "constexpr", present
                elif p in OPTIONAL_PTRS and not present:
                    signature[p], constexprs[(i,)] = "constexpr", None
                elif p.endswith("_ptr"):
                    signature[p] = INT_PTRS.get(p, "*fp32")
                else:
                    signature[p] = "i32"
            key = f"{name} sm_{arch} optional={'all' if present else 'none'}"
            try:
                compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                          target=GPUTarget("cuda", arch, 32))
                results[key] = "ok" if compiled.asm["cubin"] else "no cubin"
            except Exception as e:
                results[key] = repr(e)[:2000]
print(json.dumps(results))
"""


def test_kernels_compile_for_h100_and_a100(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)  # compile for real, not from an earlier run's cache
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, set to silence its warning
    run = subprocess.run([sys.executable, "-c", COMPILE_ALL], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(results) == 16
    failed = {k: v for k, v in results.items() if v != "ok"}
    assert not failed, failed
