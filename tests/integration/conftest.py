"""A real tritonserver (the launcher, with the backend `make backend` builds) on an exported repository.

Session fixtures: a small simulated dataset (4 symbols), a random-initialised run folder
(`lob.training.run.untrained_run`; training is not what these tests check, and 2 shared cores cannot afford it),
`lob export` of it into a temporary build repository, and the server started by the launcher on free
ports. The repository also holds `mamba_lob_onnx_small` (the step config with 2 candidate sequences and
a 1.5 s idle timeout), `lob_tokenizer_small` (the tokenizer with that idle timeout) and `lob_stream_small`
(the ensemble of both), for the idle and candidate tests. `pki`: a throwaway CA and certificates (openssl) for
the TLS tests. ``redis_server``: a real redis-server per module.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

PROJECT_REPO = Path(__file__).resolve().parents[2] / "model_repository"
SMALL_CANDIDATES, SMALL_IDLE_S = 2, 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    from lob.data.simulator import simulate_dataset

    out = tmp_path_factory.mktemp("data")
    simulate_dataset(out, n_symbols=4, n_days=1, seed=11, events_per_day=400, start_date="2024-03-04")
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, dataset_dir) -> Path:
    """A complete run folder holding a random-initialised tiny Mamba-LOB (`untrained_run`)."""
    from lob.training.run import untrained_run

    return untrained_run(tmp_path_factory.mktemp("run") / "run", dataset_dir)


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="session")
def repo(tmp_path_factory, run_dir) -> Path:
    from lob.export.repository import export_repository

    repo = tmp_path_factory.mktemp("build") / "model_repository"
    export_repository(run_dir, repo)
    shutil.copytree(repo / "mamba_lob_onnx", repo / "mamba_lob_onnx_small", ignore=shutil.ignore_patterns("configs"))
    step = read_config(repo / "mamba_lob_onnx_small" / "config.pbtxt")
    step.name = "mamba_lob_onnx_small"
    step.sequence_batching.oldest.max_candidate_sequences = SMALL_CANDIDATES
    step.sequence_batching.max_sequence_idle_microseconds = int(SMALL_IDLE_S * 1e6)
    (repo / "mamba_lob_onnx_small" / "config.pbtxt").write_text(text_format.MessageToString(step))
    shutil.copytree(repo / "lob_tokenizer", repo / "lob_tokenizer_small", ignore=shutil.ignore_patterns("configs"))
    tok = read_config(repo / "lob_tokenizer_small" / "config.pbtxt")
    tok.name = "lob_tokenizer_small"
    tok.sequence_batching.max_sequence_idle_microseconds = int(SMALL_IDLE_S * 1e6)
    (repo / "lob_tokenizer_small" / "config.pbtxt").write_text(text_format.MessageToString(tok))
    shutil.copytree(repo / "lob_stream", repo / "lob_stream_small")  # the ensemble over both
    ensemble = read_config(repo / "lob_stream_small" / "config.pbtxt")
    ensemble.name = "lob_stream_small"
    ensemble.ensemble_scheduling.step[0].model_name = "lob_tokenizer_small"
    ensemble.ensemble_scheduling.step[1].model_name = "mamba_lob_onnx_small"
    (repo / "lob_stream_small" / "config.pbtxt").write_text(text_format.MessageToString(ensemble))
    return repo


@pytest.fixture(scope="session")
def server(repo, tmp_path_factory):
    from lob.serving.launcher import TritonServer

    log = tmp_path_factory.mktemp("server") / "tritonserver.log"
    with TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                      log_file=log, extra_models=("mamba_lob_onnx_small", "lob_tokenizer_small", "lob_stream_small")) as srv:
        yield srv


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free port, one per test module (skips when redis-server is not installed)."""
    from .services import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis"), free_port()) as srv:
        yield srv


@pytest.fixture(scope="session")
def offline(run_dir, dataset_dir, tmp_path_factory):
    """`lob predict` of the whole dataset: {symbol: pyarrow table sorted by seq}."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lob.evaluation.predict import predict

    out = predict(run_dir, dataset_dir, tmp_path_factory.mktemp("offline") / "predictions.parquet")
    table = pq.read_table(out)
    return {s: table.filter(pc.equal(table["symbol"], s)) for s in sorted(set(table["symbol"].to_pylist()))}


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """ca.pem; server.{pem,key} for localhost/127.0.0.1; client.{pem,key}; other-ca.pem (trusted by nobody)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "1", "-subj",
                f"/CN=lob test {ca}")
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return d
