"""`lob serve`'s launcher refuses what it cannot run, with a message saying what is missing."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from lob.serving.launcher import PROFILES, ServerError, TritonServer, _backend_dir, _wheel_root

from .conftest import PROJECT_REPO, free_port


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ServerError, match="choose one of cpu"):
        TritonServer(PROJECT_REPO, profile="tpu")


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"]).returncode == 0,
                    reason="this machine has a GPU")
@pytest.mark.parametrize("profile", [p for p, spec in PROFILES.items() if spec.gpu])
def test_gpu_profile_without_gpu_says_so(profile):
    with pytest.raises(ServerError, match="needs a CUDA GPU"):
        TritonServer(PROJECT_REPO, profile=profile).start()


def test_backend_directory_has_the_python_stub_of_this_python(tmp_path):
    backends = _backend_dir(_wheel_root(), PROFILES["cpu"], tmp_path)
    python = backends / "python"
    assert (python / "libtriton_python.so").is_file() and (python / "triton_python_backend_utils.py").is_file()
    stub = (python / "triton_python_backend_stub").read_bytes()
    assert f"libpython{sys.version_info.major}.{sys.version_info.minor}.so".encode() in stub


def test_a_port_in_use_is_refused_before_starting(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"grpc {port}"):
            TritonServer(PROJECT_REPO, grpc_port=port, http_port=free_port(), metrics_port=free_port(),
                         log_file=tmp_path / "log").start()


def test_cpu_profile_uses_the_backend_directory_make_backend_built(monkeypatch, tmp_path):
    from lob.serving import launcher

    root, backends = launcher._server_root(PROFILES["cpu"])
    assert backends == launcher.BUILT_BACKENDS
    assert (backends / "onnxruntime" / "libtriton_onnxruntime.so").is_file() and (backends / "python").is_dir()
    monkeypatch.setattr(launcher, "BUILT_BACKENDS", tmp_path / "nothing")
    with pytest.raises(ServerError, match="make backend"):
        launcher._server_root(PROFILES["cpu"])


@pytest.mark.server
def test_server_runs_with_a_grpc_state_pool_above_the_in_flight_requests(server):
    """The gRPC frontend frees a request's State while its streaming callback still writes to it unless the State
    goes back to the pool (docs/upstream/triton-grpc-stream-uaf.md): every launched server carries the pool size
    and Triton accepted it (the server is up)."""
    from pathlib import Path

    from lob.serving.launcher import GRPC_STATE_POOL

    argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    assert Path(argv[0].decode()).name == "tritonserver"
    pools = [a for a in argv if a.startswith(b"--grpc-infer-allocation-pool-size=")]
    assert pools == [f"--grpc-infer-allocation-pool-size={GRPC_STATE_POOL}".encode()]
    assert server.returncode() is None
