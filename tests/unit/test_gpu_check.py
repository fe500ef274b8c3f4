"""scripts/gpu_check.py's CPU mode (what `make test` runs so the GPU check cannot rot between lends): the report's
sections and rows, the GPU-only parts skipped with their reason, and a failing measurement kept as a failed row."""
import csv
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ENV.pop("TRITON_INTERPRET", None)
OPS = {"selective_scan fwd+bwd", "selective_state_update", "causal_conv1d_update"}
DTYPES = {"float32", "float16", "bfloat16"}


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--out", str(out)], env=ENV, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, json.loads((out / "report.json").read_text())


def test_cpu_mode_reports_every_section(cpu_report):
    out, report = cpu_report
    assert report["mode"] == "cpu" and "CPU" in report["device"]
    assert list(report["sections"]) == ["kernels", "kernel_speed", "mixed_precision", "step_throughput", "cuda_graphs"]
    md = (out / "report.md").read_text()
    assert md.startswith(f"# GPU check: {report['device']}")
    for name, section in report["sections"].items():
        assert f"## {name}\n\nStatus: {section['status']}" in md
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == sum(len(s["rows"]) for s in report["sections"].values()) > 0


def test_gpu_only_sections_say_skipped_no_gpu_with_the_reason(cpu_report):
    sections = cpu_report[1]["sections"]
    for name in ("kernel_speed", "cuda_graphs"):
        status = sections[name]["status"]
        assert status.startswith("skipped: no GPU (") and len(status) > len("skipped: no GPU ()") + 10, status
        assert sections[name]["rows"] == []


def test_kernels_checked_for_every_op_and_dtype_with_pool_rows_untouched(cpu_report):
    section = cpu_report[1]["sections"]["kernels"]
    assert section["status"] == "ok"
    rows = section["rows"]
    assert {(r["kernel"], r["dtype"]) for r in rows} == {(k, d) for k in OPS for d in DTYPES}
    assert all(r["status"] == "ok" and r["max_abs_err"] >= 0 for r in rows), rows  # ok: within the dtype's tolerance
    pool_rows = [r for r in rows if r["kernel"] == "selective_state_update"]
    assert pool_rows and all(r["pool_rows_untouched_identical"] is True for r in pool_rows)
    # the fp32 errors are measured, not zero (a comparison of a tensor with itself would give 0 everywhere)
    assert any(r["max_abs_err"] > 0 for r in rows if r["dtype"] == "float32")


def test_mixed_precision_covers_each_arch_over_the_whole_stream(cpu_report):
    section = cpu_report[1]["sections"]["mixed_precision"]
    assert section["status"] == "ok"
    rows = section["rows"]
    assert {(r["arch"], r["dtype"]) for r in rows} == {(a, d) for a in ("mamba", "transformer", "hybrid")
                                                       for d in ("float16", "bfloat16")}
    for arch_dtype in {(r["arch"], r["dtype"]) for r in rows}:
        windows = sorted((r["ticks_from"], r["ticks_to"]) for r in rows if (r["arch"], r["dtype"]) == arch_dtype)
        assert windows[0][0] == 0 and all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
        assert windows[-1][1] == rows[0]["stream_ticks"] > 1  # every tick of the stream was stepped
    assert all(r["status"] == "ok" for r in rows)
    assert all(0 <= r["top1_agreement"] <= 1 and 0 <= r["max_abs_dp_dir"] <= 1 for r in rows)
    assert any(r["max_abs_dp_dir"] > 0 for r in rows)  # half precision differs from FP32 somewhere


def test_step_throughput_rows(cpu_report):
    rows = cpu_report[1]["sections"]["step_throughput"]["rows"]
    assert rows and all(r["status"] == "ok" and r["ticks_per_s"] > 0 and r["device"] == "cpu" for r in rows)
    assert all(r["seqs_per_GB"] * r["state_bytes_per_seq"] <= 1e9 < (r["seqs_per_GB"] + 1) * r["state_bytes_per_seq"]
               for r in rows)


@pytest.fixture
def check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_speed_code_path_runs_under_the_interpreter(check_module, triton_interpreter):
    """The GPU-only section's code (CPU mode reports it skipped) on tiny shapes, timed with perf_counter."""
    def once_ms(fn):
        fn()  # the interpreter's first call traces
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    check = check_module.Check(gpu=False, budget_s=60)
    rows = []
    check_module.kernel_speed(check, rows, ms=once_ms)
    assert [r["kernel"] for r in rows] == ["selective_state_update", "selective_scan fwd"], rows
    update, scan = rows
    assert update["status"] == scan["status"] == "ok"
    # batch 2, dim 8, dstate 16, fp32: state read + written 2*256, x/dt/z/out 4*16, B/C 2*32, A 128, D/dt_bias 2*8
    assert update["bytes"] == 4 * (512 + 64 + 64 + 128 + 16)
    assert update["GBps"] == pytest.approx(update["bytes"] / update["ms"] / 1e6)
    assert update["copy_time_ratio"] == pytest.approx(update["copy_ms"] / update["ms"]) and update["copy_ms"] > 0
    assert scan["speedup_vs_ref"] == pytest.approx(scan["ref_ms"] / scan["ms"]) and scan["ms"] > 0


def test_a_failing_measurement_is_a_failed_row_and_the_rest_runs(check_module):
    check = check_module.Check(gpu=False, budget_s=60)

    def measurements(rows):
        check.guarded(rows, {"what": "broken"}, lambda: 1 / 0)
        check.guarded(rows, {"what": "fine"}, lambda: {"status": "ok"})
    check.section("demo", measurements)
    section = check.sections["demo"]
    assert section["status"] == "failed"
    assert section["rows"][0]["status"] == "failed" and "ZeroDivisionError" in section["rows"][0]["error"]
    assert section["rows"][1] == {"what": "fine", "status": "ok"}


def test_past_the_budget_sections_are_skipped_and_say_so(check_module):
    check = check_module.Check(gpu=False, budget_s=0)
    check.section("late", lambda rows: rows.append({"status": "ok"}))
    assert check.sections["late"] == {"status": "skipped: time budget spent", "rows": []}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_the_gpu_mode_refuses_and_names_cpu_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], env=ENV, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "--cpu" in proc.stderr
    assert not list(tmp_path.iterdir())
