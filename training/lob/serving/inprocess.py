"""The served model in this process, no network hop: a build repository's ``tokenizer.json`` and step ONNX.

``InProcess(repo)`` loads ``lob_tokenizer/1/tokenizer.json`` and ``mamba_lob_onnx/1/model.onnx`` (what
``lob export`` wrote, what the CPU server runs) into onnxruntime with the step config's session settings,
and keeps each symbol's tokenizer state and step-model state here. ``predict(ticks)`` takes at most one
tick per symbol, tokenizes them together (``Tokenizer.step_batch``, as the server's tokenizer does) and runs
one ONNX call for the batch; it returns a ``lobclient.Prediction`` per tick, in order, equal to what
``lobclient.stream`` gets from the server for the same ticks (``tests/integration/test_inprocess.py``).
A symbol's first tick STARTs its state (zeros, the config's ``initial_state``); ``end(symbol)`` frees it.
A tick the tokenizer refuses gets ``error`` (``LOB_BAD_TICK: ...``) and leaves the symbol's state as it was.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import lobclient
from lob.contract import (BAD_TICK_PREFIX, DIR_PROBS, FEATURES, MODEL_VERSION, STEP_MODEL, TOKEN, TOKENIZER_MODEL,
                          TOPK_IDS, TOPK_PROBS)
from lob.tokenizer import TickError, TickInput, Tokenizer

_ORT_LEVELS = {-1: "ORT_ENABLE_BASIC", 1: "ORT_ENABLE_EXTENDED", 2: "ORT_DISABLE_ALL"}  # Triton's; else ENABLE_ALL


@dataclass
class _Symbol:
    tokenizer_state: object
    model_state: dict[str, np.ndarray]  # state input name -> (1, ...) float32
    seq: int = 0  # ticks seen in this stream (refused ones included), as lobclient counts them
    depth: int = 0  # ticks the state has taken since START


def step_inputs(tokens: np.ndarray, features: np.ndarray, states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The step model's feed for B sequences of one tick each: TOKEN int64 (B, T=1), FEATURES float32 (B, 1, F),
    states."""
    return {TOKEN: tokens.astype(np.int64).reshape(-1, 1), FEATURES: features.astype(np.float32)[:, None], **states}


class InProcess:
    """Mamba-LOB served in this process from build repository ``repo`` (``lob export``'s output).

    ``rewarm_ticks`` only sets ``Prediction.warm`` as ``lobclient`` does (the state has taken that many ticks).
    """

    def __init__(self, repo: Path = Path("build/model_repository"), rewarm_ticks: int = lobclient.DEFAULT_REWARM_TICKS):
        import onnxruntime as ort

        repo = Path(repo)
        onnx_path, tok_path = repo / STEP_MODEL / "1" / "model.onnx", repo / TOKENIZER_MODEL / "1" / "tokenizer.json"
        for f in (onnx_path, tok_path):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; build the repository with `lob export --run RUN --repo {repo}`")
        config = text_format.Parse((repo / STEP_MODEL / "config.pbtxt").read_text(), mc.ModelConfig())
        self.tokenizer = Tokenizer.load(tok_path)
        self.rewarm_ticks = rewarm_ticks
        self.session = ort.InferenceSession(str(onnx_path), _session_options(ort, config),
                                            providers=["CPUExecutionProvider"])
        self.initial_state = {}  # state input name -> (1, ...) float32 zeros
        for s in config.sequence_batching.state:
            if not s.initial_state or not s.initial_state[0].zero_data:
                raise ValueError(f"{repo / STEP_MODEL / 'config.pbtxt'}: state {s.input_name}: only zero_data "
                                 "initial states are supported in-process")
            self.initial_state[s.input_name] = np.zeros((1, *s.dims), np.float32)
        self.state_outputs = {s.output_name: s.input_name for s in config.sequence_batching.state}
        self.outputs = [DIR_PROBS, TOPK_IDS, TOPK_PROBS, MODEL_VERSION, *self.state_outputs]
        self.symbols: dict[str, _Symbol] = {}

    def predict(self, ticks: Sequence[lobclient.Tick]) -> list[lobclient.Prediction]:
        """One prediction per tick (at most one tick per symbol), in order; one ONNX call for the batch."""
        t0 = time.perf_counter()
        if len({t.symbol for t in ticks}) != len(ticks):
            raise ValueError("predict: at most one tick per symbol per call (a symbol's ticks are sequential)")
        syms = [self.symbols.get(t.symbol) or _Symbol(self.tokenizer.init_state(), dict(self.initial_state))
                for t in ticks]
        inputs = [TickInput(int(t.ts_ns), t.bid_px, t.bid_sz, t.ask_px, t.ask_sz, float(t.trade_px), float(t.trade_sz),
                            int(t.trade_side)) for t in ticks]
        tokens, features, new_states = self.tokenizer.step_batch(inputs, [s.tokenizer_state for s in syms])
        out = [lobclient.Prediction(symbol=t.symbol, ts_ns=int(t.ts_ns), seq=s.seq) for t, s in zip(ticks, syms)]
        rows = [b for b, st in enumerate(new_states) if not isinstance(st, TickError)]
        for b, st in enumerate(new_states):
            syms[b].seq += 1
            self.symbols[ticks[b].symbol] = syms[b]  # a refused first tick leaves it at the initial state
            if isinstance(st, TickError):
                out[b].error = f"{BAD_TICK_PREFIX}{ticks[b].symbol}: {st}"
        if rows:
            states = {name: np.concatenate([syms[b].model_state[name] for b in rows]) for name in self.initial_state}
            result = dict(zip(self.outputs, self.session.run(self.outputs, step_inputs(
                np.asarray(tokens)[rows], np.asarray(features)[rows], states))))
            for r, b in enumerate(rows):
                sym, p = syms[b], out[b]
                p.dir_probs, p.topk_ids, p.topk_probs = (result[k][r, 0] for k in (DIR_PROBS, TOPK_IDS, TOPK_PROBS))
                version = result[MODEL_VERSION][r].reshape(-1)[0]
                p.model_version = version.decode() if isinstance(version, bytes) else str(version)
                p.warm = sym.depth >= self.rewarm_ticks
                sym.depth += 1
                sym.tokenizer_state = new_states[b]
                sym.model_state = {i: result[o][r:r + 1] for o, i in self.state_outputs.items()}
        elapsed = time.perf_counter() - t0
        for p in out:
            p.latency_s = elapsed
        return out

    def end(self, symbol: str) -> None:
        """Forget ``symbol``'s state: its next tick STARTs afresh."""
        self.symbols.pop(symbol, None)


def _session_options(ort, config: mc.ModelConfig):
    """onnxruntime session options as Triton's onnxruntime backend sets them from the step config."""
    params = {k: v.string_value for k, v in config.parameters.items()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(params.get("intra_op_thread_count", 0))
    opts.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
    opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if params.get("execution_mode") == "1"
                           else ort.ExecutionMode.ORT_SEQUENTIAL)
    level = config.optimization.graph.level
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_LEVELS.get(level, "ORT_ENABLE_ALL"))
    return opts
