"""The step model's configs of every profile are one model: same tensors, same implicit state, CPU vs GPU."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

REPO = Path(__file__).resolve().parents[2] / "model_repository"
CPU = REPO / "mamba_lob_onnx" / "config.pbtxt"
GPU = [REPO / "mamba_lob_onnx" / "configs" / "gpu.pbtxt", REPO / "mamba_lob_trt_fp16" / "config.pbtxt",
       REPO / "mamba_lob_trt_bf16" / "config.pbtxt"]


def load(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.mark.parametrize("path", GPU, ids=lambda p: str(p.relative_to(REPO)))
def test_gpu_step_config_is_the_cpu_one_but_for_the_instance_kind(path):
    cpu, gpu = load(CPU), load(path)
    assert len(cpu.sequence_batching.state) == 2  # not a vacuous comparison
    assert list(gpu.sequence_batching.state) == list(cpu.sequence_batching.state)
    assert gpu.sequence_batching.max_sequence_idle_microseconds == cpu.sequence_batching.max_sequence_idle_microseconds
    assert list(gpu.input) == list(cpu.input)
    # TensorRT engines emit no strings: their ensembles take MODEL_VERSION from lob_model_version
    assert list(gpu.output) == [o for o in cpu.output if gpu.platform != "tensorrt_plan" or o.name != "MODEL_VERSION"]
    assert [g.kind for g in cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]


def test_every_ensemble_of_the_onnx_step_maps_the_same_tensors():
    ensembles = [load(REPO / name / "config.pbtxt") for name in ("lob_stream", "lob_stream_onnx")]
    assert [list(e.ensemble_scheduling.step) for e in ensembles[1:]] == [list(ensembles[0].ensemble_scheduling.step)]
    assert ensembles[0].ensemble_scheduling.step[1].model_name == "mamba_lob_onnx"
