"""gRPC over mutual TLS on a real tritonserver, with the throwaway CA of the `pki` fixture (conftest)."""
from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

import lobclient
from lob.data.schema import load_dataset
from lob.serving.replay import interleave

from .conftest import free_port

pytestmark = [pytest.mark.server, pytest.mark.slow,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


@pytest.fixture(scope="module")
def tls_server(repo, pki, tmp_path_factory):
    from lob.serving.launcher import TLS, TritonServer

    log = tmp_path_factory.mktemp("tls-server") / "tritonserver.log"
    tls = TLS(pki / "server.pem", pki / "server.key", ca=pki / "ca.pem")
    with TritonServer(repo, "cpu", grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                      log_file=log, tls=tls) as srv:
        yield srv


@pytest.fixture(scope="module")
def ticks(dataset_dir):
    return list(interleave({s: t.slice(0, 30) for s, t in load_dataset(dataset_dir).items()}))


def test_mutual_tls_stream_equals_plaintext_stream(tls_server, server, pki, ticks):
    secure = list(lobclient.stream(ticks, url=tls_server.url, tls=lobclient.TLS(
        root_certificates=pki / "ca.pem", private_key=(pki / "client.key").read_bytes(),
        certificate_chain=pki / "client.pem")))
    plain = list(lobclient.stream(ticks, url=server.url))
    assert len(secure) == len(ticks) and all(p.ok for p in secure), [p.error for p in secure if not p.ok][:2]
    np.testing.assert_allclose(np.stack([p.dir_probs for p in secure]), np.stack([p.dir_probs for p in plain]), atol=1e-5)


def test_direct_path_over_mutual_tls_equals_the_ensemble_over_plaintext(tls_server, server, pki, repo, ticks):
    tls = lobclient.TLS(root_certificates=pki / "ca.pem", private_key=pki / "client.key",
                        certificate_chain=pki / "client.pem")
    direct = list(lobclient.stream(ticks, url=tls_server.url, tls=tls,
                                   tokenizer=repo / "lob_tokenizer" / "1" / "tokenizer.json"))
    plain = list(lobclient.stream(ticks, url=server.url))
    assert len(direct) == len(ticks) and all(p.ok for p in direct), [p.error for p in direct if not p.ok][:2]
    assert [(p.symbol, p.seq) for p in direct] == [(p.symbol, p.seq) for p in plain]
    np.testing.assert_allclose(np.stack([p.dir_probs for p in direct]), np.stack([p.dir_probs for p in plain]), atol=1e-5)
    unsigned = list(lobclient.stream(ticks[:4], url=tls_server.url, tls=lobclient.TLS(root_certificates=pki / "ca.pem"),
                                     tokenizer=repo / "lob_tokenizer" / "1" / "tokenizer.json",
                                     recovery=lobclient.Recovery(reconnect_deadline_s=2.0)))
    assert all("no connection" in p.error for p in unsigned)  # the server really asks for the client's certificate


@pytest.mark.parametrize("case", ["plaintext", "no client certificate", "untrusted server"])
def test_a_client_without_the_right_credentials_fails_every_tick_fast(tls_server, pki, ticks, case):
    tls = {"plaintext": None,
           "no client certificate": lobclient.TLS(root_certificates=pki / "ca.pem"),
           "untrusted server": lobclient.TLS(root_certificates=pki / "other-ca.pem", private_key=pki / "client.key",
                                             certificate_chain=pki / "client.pem")}[case]
    t0 = time.monotonic()
    preds = list(lobclient.stream(ticks[:10], url=tls_server.url, tls=tls, transport=lobclient.Transport(timeout_s=5.0),
                                  recovery=lobclient.Recovery(reconnect_deadline_s=2.0)))
    assert time.monotonic() - t0 < 15
    assert len(preds) == 10 and all(not p.ok for p in preds)
    assert all("no connection" in p.error and "UNAVAILABLE" in p.error for p in preds), preds[0].error
    if case == "plaintext":
        assert "tls=lobclient.TLS" in preds[0].error  # the hint


def test_lob_stream_cli_speaks_mutual_tls(tls_server, pki, dataset_dir, tmp_path):
    from typer.testing import CliRunner

    from lob.cli import app

    out = tmp_path / "served.parquet"
    result = CliRunner().invoke(app, ["stream", "--url", tls_server.url, "--data", str(dataset_dir), "--out", str(out),
                                      "--limit", "10", "--tls-ca", str(pki / "ca.pem"),
                                      "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")])
    assert result.exit_code == 0, result.output
    assert out.is_file()
