"""mamba_lob_cpu: one Mamba step for every sequence in the batch, as ONE onnxruntime call.

Conv/SSM states live in a slot pool preallocated at load time, ``(pool_size, n_layer, d_inner, ·)``;
a sequence (correlation id) owns one slot from its START to its END, or until it has been idle for
the config's ``sequence_batching.max_sequence_idle_microseconds``. Per execute: gather the batch's
slots -> one onnxruntime run -> scatter the new states back. Inputs and outputs live in buffers
preallocated at load time, bound once per batch size (``IOBinding``), so a step allocates no arrays
and skips onnxruntime's per-call feed/fetch conversion (~15 µs of a ~110 µs tiny-preset step). Config ``parameters``:
``pool_size`` (slots), ``intra_op_threads`` (onnxruntime).
"""
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

NO_STATE = "LOB_NO_STATE: "  # stable error prefix clients match on (docs/serving.md, lobclient.classify_error)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.model_version = json.loads((folder / "export.json").read_text())["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.n_features = shapes["FEATURES"][1]
        pool_size = int(params.get("pool_size", "1024"))
        max_batch = int(config["max_batch_size"])
        self.conv = np.zeros((pool_size, *shapes["STATE_CONV_IN"][1:]), np.float32)  # (P, n_layer, d_inner, d_conv-1)
        self.ssm = np.zeros((pool_size, *shapes["STATE_SSM_IN"][1:]), np.float32)  # (P, n_layer, d_inner, d_state)
        # the graph's inputs and outputs for up to max_batch rows; a batch of n uses the first n
        self.inputs = {i.name: np.empty((max_batch, *i.shape[1:]), _DTYPES[i.type]) for i in self.session.get_inputs()}
        self.outputs = {o.name: np.empty((max_batch, *o.shape[1:]), _DTYPES[o.type]) for o in self.session.get_outputs()}
        self.bindings = {}  # batch size -> IOBinding of the first n rows of every buffer
        self.free = list(range(pool_size - 1, -1, -1))  # stack of free slots, lowest on top
        self.slot_of = {}  # correlation id -> slot
        self.owner = [None] * pool_size  # slot -> correlation id
        self.last_used = np.zeros(pool_size, np.float64)  # time.monotonic() of each slot's last step
        self.idle_timeout_s = int(config["sequence_batching"]["max_sequence_idle_microseconds"]) / 1e6
        self.next_sweep = time.monotonic() + min(self.idle_timeout_s, 1.0)
        self.version_out = np.array([[self.model_version.encode()]], dtype=np.object_)  # (1, 1) BYTES

    def execute(self, requests):
        self._reclaim_idle()
        responses = [None] * len(requests)
        steps = []  # (request index, slot, end, token (1, 1), features (1, F))
        for i, request in enumerate(requests):
            x = {t.name(): t.as_numpy() for t in request.inputs()}  # one pass, not a lookup per name
            try:
                steps.append(self._admit(i, x))
            except _StepError as err:
                responses[i] = _error(str(err))
        # Triton's oldest strategy keeps at most one request per sequence in flight, so the slots of a
        # batch are distinct and one gather/run/scatter is exact.
        if steps:
            try:
                self._run(steps, responses)
            except Exception as err:  # an onnxruntime failure fails this batch's requests, not the server
                for i, *_ in steps:
                    responses[i] = _error(f"mamba_lob_cpu: onnxruntime step failed: {err}")
        return responses

    def _admit(self, i, x):
        corrid, start, end = int(x["CORRID"].flat[0]), bool(x["START"].flat[0]), bool(x["END"].flat[0])
        features = x["FEATURES"]  # (1, F)
        if features.shape[-1] != self.n_features:
            raise _StepError(f"sequence {corrid}: FEATURES has {features.shape[-1]} values, the model takes "
                             f"{self.n_features} (tokenizer and model from different exports?)")
        slot = self.slot_of.get(corrid)
        if start:
            if slot is None:
                if not self.free:
                    raise _StepError(f"sequence {corrid}: state pool full ({len(self.slot_of)} sequences open, "
                                     f"pool_size {self.conv.shape[0]}); end idle sequences or raise pool_size")
                slot = self.slot_of[corrid] = self.free.pop()
                self.owner[slot] = corrid
            self.conv[slot] = 0.0
            self.ssm[slot] = 0.0
        elif slot is None:
            raise _StepError(f"{NO_STATE}sequence {corrid}: no state slot (never started, ended, or idle longer than "
                             f"{self.idle_timeout_s:g} s); send this tick with the START flag")
        self.last_used[slot] = time.monotonic()
        return i, slot, end, x["TOKEN"], features

    def _run(self, steps, responses):
        n = len(steps)
        x, y = self.inputs, self.outputs
        slots = np.fromiter((s for _, s, *_ in steps), np.int64, n)
        np.concatenate([s[3] for s in steps], out=x["TOKEN"][:n])  # (n, 1)
        np.concatenate([s[4] for s in steps], out=x["FEATURES"][:n])  # (n, F)
        np.take(self.conv, slots, axis=0, out=x["STATE_CONV_IN"][:n])  # (n, n_layer, d_inner, d_conv-1)
        np.take(self.ssm, slots, axis=0, out=x["STATE_SSM_IN"][:n])  # (n, n_layer, d_inner, d_state)
        self.session.run_with_iobinding(self._binding(n))
        self.conv[slots] = y["STATE_CONV_OUT"][:n]
        self.ssm[slots] = y["STATE_SSM_OUT"][:n]
        # copies: the output buffers are overwritten by the next execute
        dir_probs, topk_ids, topk_probs = (y[k][:n].copy() for k in ("DIR_PROBS", "TOPK_IDS", "TOPK_PROBS"))
        for row, (i, slot, end, *_) in enumerate(steps):
            responses[i] = pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("DIR_PROBS", dir_probs[row:row + 1]),  # (1, 3, 3)
                pb_utils.Tensor("TOPK_IDS", topk_ids[row:row + 1]),  # (1, 5)
                pb_utils.Tensor("TOPK_PROBS", topk_probs[row:row + 1]),  # (1, 5)
                pb_utils.Tensor("MODEL_VERSION", self.version_out),
            ])
            if end:
                self._release(slot)

    def _binding(self, n):
        """The IOBinding of the first ``n`` rows of the input and output buffers (made once per n)."""
        binding = self.bindings.get(n)
        if binding is None:
            binding = self.bindings[n] = self.session.io_binding()
            for name, a in self.inputs.items():
                binding.bind_input(name, "cpu", 0, a.dtype, [n, *a.shape[1:]], a.ctypes.data)
            for name, a in self.outputs.items():
                binding.bind_output(name, "cpu", 0, a.dtype, [n, *a.shape[1:]], a.ctypes.data)
        return binding

    def _release(self, slot):
        del self.slot_of[self.owner[slot]]
        self.free.append(slot)

    def _reclaim_idle(self):
        now = time.monotonic()
        if now < self.next_sweep:
            return
        self.next_sweep = now + min(self.idle_timeout_s, 1.0)
        for slot in [s for s in self.slot_of.values() if now - self.last_used[s] > self.idle_timeout_s]:
            self._release(slot)


_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64}  # onnxruntime type names


class _StepError(Exception):
    """A request this model refuses; its message becomes the error response."""


def _error(message):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
