"""lob_model_version: the exported model's version string for every request row (GPU ensembles).

Reads ``model_version`` from the export.json named by the config parameter ``export_json`` (relative to
the model repository) once at load; ``MODEL_VERSION`` is (B, 1) BYTES, B the rows of ``TS_NS``.
"""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        export_json = Path(args["model_repository"]).parent / config["parameters"]["export_json"]["string_value"]
        if not export_json.is_file():
            raise pb_utils.TritonModelException(f"lob_model_version: {export_json} is missing; run `lob export`")
        self.version = json.loads(export_json.read_text())["model_version"].encode()

    def execute(self, requests):
        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, "TS_NS").as_numpy().shape[0]
            version = np.full((rows, 1), self.version, dtype=np.object_)  # (B, 1) BYTES
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("MODEL_VERSION", version)]))
        return responses
