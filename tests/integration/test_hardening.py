"""`lob serve`'s hardened defaults on a real tritonserver: clients cannot load or unload models."""
from __future__ import annotations

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import lobclient
from lob.serving.launcher import ADMIN_HEADER, GRPC_ADMIN_HEADER
from lob.serving.replay import interleave

pytestmark = pytest.mark.server


def test_unload_without_the_admin_key_is_refused_and_streaming_goes_on(server, dataset_dir):
    from lob.data.schema import load_dataset

    client = grpcclient.InferenceServerClient(server.url)
    with pytest.raises(InferenceServerException, match="restricted") as refused:
        client.unload_model("lob_stream")
    with pytest.raises(InferenceServerException, match="restricted"):
        client.unload_model("lob_stream", headers={GRPC_ADMIN_HEADER: "not-the-key"})
    with pytest.raises(InferenceServerException, match="restricted"):
        client.load_model("lob_stream")
    http = httpclient.InferenceServerClient(f"localhost:{server.ports['http']}")
    with pytest.raises(InferenceServerException, match="restricted"):
        http.unload_model("lob_stream")
    with pytest.raises(InferenceServerException, match="restricted"):
        http.unload_model("lob_stream", headers={ADMIN_HEADER: "not-the-key"})
    assert client.is_model_ready("lob_stream") and client.is_model_ready("mamba_lob_onnx")
    # the key opens the restricted API (a read-only call: the index, so the shared server keeps its models)
    index = client.get_model_repository_index(headers={GRPC_ADMIN_HEADER: server.admin_key}, as_json=True)
    assert {"lob_stream", "mamba_lob_onnx"} <= {m["name"] for m in index["models"]}
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_model_repository_index()
    assert http.get_model_repository_index(headers={ADMIN_HEADER: server.admin_key})

    dataset = {s: t.slice(0, 20) for s, t in load_dataset(dataset_dir).items()}
    preds = list(lobclient.stream(interleave(dataset), url=server.url))
    assert len(preds) == 20 * len(dataset) and all(p.ok for p in preds), refused.value
