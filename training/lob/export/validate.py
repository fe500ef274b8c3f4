"""`lob validate`: static checks of a Triton model repository, before any server loads it.

Every `config.pbtxt` is parsed into Triton's own `ModelConfig` message (`tritonclient.grpc.model_config_pb2`),
so an unknown or misspelt field fails here as it would in the server. Then, per model: the name matches its
folder, version folders are numeric, the platform's file is present, an ONNX file's inputs and outputs match
the config (implicit state included, for any architecture's states: each entry named STATE_<NAME>_IN/_OUT,
every STATE_*_OUT of the graph fed back by an entry), a stateful model has the sequence batching it needs, a Python model
defines `TritonPythonModel.execute` (read with `ast`, never imported); per ensemble: every tensor is produced
exactly once and every consumer agrees with its producer on dtype and shape, and the steps run one at a time
(a Triton r24.10 hazard: ``_check_one_step_at_a_time``). A model's named configs
(`configs/<name>.pbtxt`, loaded with `--model-config-name`) get the same checks as its `config.pbtxt`. Implicit
state entries are checked against their initial_state (dtype, dims) and the state dtypes Triton allows, and
one state name is declared identically in every config of the repository (the CPU and GPU step configs
cannot drift apart). Every name that crosses a process boundary is `lob.contract`'s (read when called): model
names (each config's, each ensemble step's, the tokenizer's ``end_step_models``), input and output tensor
names (or ``state_names``' STATE_<NAME>_IN / _OUT), and the dims the contract fixes: every contract tensor
starts with the time axis -1 (T ticks of a sequence per request), then book inputs [-1, N_LEVELS],
DIR_PROBS [-1, len(HORIZONS), len(CLASSES)], one-value-per-tick tensors [-1].

`model.onnx`, `model_fp16.onnx` and `model.plan` are build products (`lob export`, `lob build-trt`;
git-ignored): a missing one is not a fault, a present one is checked. TensorRT plans are engine- and
GPU-specific and only checked for presence. Each problem is one string naming the file and the config field.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from lob import contract
from lob.contract import parse_state_name, state_names

BUILD_PRODUCTS = frozenset({"model.onnx", "model_fp16.onnx", "model.plan"})

_DEFAULT_FILE = {"onnxruntime_onnx": "model.onnx", "onnxruntime": "model.onnx", "tensorrt_plan": "model.plan",
                 "tensorrt": "model.plan", "python": "model.py"}

# Triton data type -> onnx.TensorProto element type (the values of onnx.TensorProto.DataType).
_ONNX_TYPE = {mc.TYPE_BOOL: 9, mc.TYPE_UINT8: 2, mc.TYPE_UINT16: 4, mc.TYPE_UINT32: 12, mc.TYPE_UINT64: 13,
              mc.TYPE_INT8: 3, mc.TYPE_INT16: 5, mc.TYPE_INT32: 6, mc.TYPE_INT64: 7, mc.TYPE_FP16: 10,
              mc.TYPE_FP32: 1, mc.TYPE_FP64: 11, mc.TYPE_STRING: 8, mc.TYPE_BF16: 16}

# Triton's implicit state holds fixed-size tensors: variable-length BYTES (TYPE_STRING) states are refused
_STATE_DTYPES = frozenset(_ONNX_TYPE) - {mc.TYPE_STRING}
CONFIGS_DIR = "configs"  # named configs, one per --model-config-name

_Kind = mc.ModelSequenceBatching.Control
_PYTHON_CONTROLS = {_Kind.CONTROL_SEQUENCE_START: "START", _Kind.CONTROL_SEQUENCE_END: "END",
                    _Kind.CONTROL_SEQUENCE_CORRID: "CORRID"}


@dataclass
class _Model:
    folder: Path
    config_path: Path
    config: mc.ModelConfig

    @property
    def kind(self) -> str:
        """'ensemble', 'python', 'onnxruntime_onnx', 'tensorrt_plan', ... (backend wins over platform)."""
        return self.config.backend or self.config.platform

    def shape(self, dims) -> tuple[int, ...]:
        """Full tensor shape as the model sees it: a leading -1 batch dim when the model batches."""
        return ((-1,) if self.config.max_batch_size > 0 else ()) + tuple(dims)


def validate_repository(repo: Path) -> list[str]:
    """All problems found in model repository `repo`, each naming the file and field; [] when it is sound."""
    repo = Path(repo)
    if not repo.is_dir():
        return [f"{repo}: not a directory"]
    problems: list[str] = []
    # folder name -> model; None for a folder whose config is missing or unparsable (reported once, here)
    models: dict[str, _Model | None] = {}
    variants: list[_Model] = []  # every config: config.pbtxt and configs/*.pbtxt
    for folder in sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
        models[folder.name] = _load(folder, problems)
        variants += [m for m in [models[folder.name], *(_load(folder, problems, path)
                                 for path in sorted((folder / CONFIGS_DIR).glob("*.pbtxt")))] if m is not None]
    for model in variants:
        _check_name_and_versions(model, problems)
        _check_io_declarations(model, problems)
        _check_contract(model, problems)
        _check_sequence_batching(model, problems)
        if model.kind == "ensemble":
            _check_ensemble(model, models, problems)
            _check_one_step_at_a_time(model, problems)
        else:
            _check_model_files(model, problems)
    _check_states_agree(variants, problems)
    return problems


def _load(folder: Path, problems: list[str], path: Path | None = None) -> _Model | None:
    path = path or folder / "config.pbtxt"
    if not path.is_file():
        problems.append(f"{path}: missing (every model folder needs a config.pbtxt)")
        return None
    try:
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as err:  # names line:column and the unknown field or bad value
        problems.append(f"{path}: {err}")
        return None
    return _Model(folder, path, config)


def _versions(model: _Model) -> list[Path]:
    return sorted(p for p in model.folder.iterdir() if p.is_dir() and p.name.isdigit())


def _check_name_and_versions(model: _Model, problems: list[str]) -> None:
    cfg, where = model.config, model.config_path
    if cfg.name != model.folder.name:
        problems.append(f"{where}: name: '{cfg.name}' differs from its folder '{model.folder.name}'")
    if not (cfg.platform or cfg.backend):
        problems.append(f"{where}: platform/backend: neither is set")
    for p in sorted(model.folder.iterdir()):
        if p.is_dir() and not p.name.isdigit() and not p.name.startswith((".", "__")) and p.name != CONFIGS_DIR:
            problems.append(f"{p}: version folder: '{p.name}' is not a number (Triton ignores it)")
    if not _versions(model):
        problems.append(f"{model.folder}: version folder: none (need e.g. {model.folder}/1/)")


def _check_io_declarations(model: _Model, problems: list[str]) -> None:
    for field, tensors in (("input", model.config.input), ("output", model.config.output)):
        for i, t in enumerate(tensors):
            if t.data_type == mc.TYPE_INVALID:
                problems.append(f"{model.config_path}: {field}[{i}] ({t.name}).data_type: not set")


def _contract_dims() -> dict[str, list[int]]:
    """Per-row dims (no batch dim; the time axis -1 first) that `lob.contract` fixes; FEATURES and TOPK_* are
    sized by the model after their time axis."""
    c = contract
    book = {name: [-1, c.N_LEVELS] for name in (c.BID_PX, c.BID_SZ, c.ASK_PX, c.ASK_SZ)}
    one = {name: [-1] for name in (c.TS_NS, c.TRADE_PX, c.TRADE_SZ, c.TRADE_SIDE, c.TOKEN, c.MODEL_VERSION)}
    return {**book, **one, c.DIR_PROBS: [-1, len(c.HORIZONS), len(c.CLASSES)]}


def _check_contract(model: _Model, problems: list[str]) -> None:
    """The names and dims that cross a process boundary are `lob.contract`'s: model names, tensor names
    (or STATE_<NAME>_IN/_OUT), the dims the contract fixes, the step models a python model ends."""
    cfg, where = model.config, model.config_path
    if cfg.name not in contract.MODELS:
        problems.append(f"{where}: name: '{cfg.name}' is not a model of lob.contract (MODELS: {list(contract.MODELS)})")
    dims = _contract_dims()
    for field, tensors in (("input", cfg.input), ("output", cfg.output)):
        for i, t in enumerate(tensors):
            if t.name not in contract.TENSORS and parse_state_name(t.name) is None:
                problems.append(f"{where}: {field}[{i}] ({t.name}).name: not a tensor of lob.contract "
                                f"(TENSORS: {list(contract.TENSORS)}, or STATE_<NAME>_IN/_OUT)")
            elif t.name in dims and list(t.dims) != dims[t.name]:
                problems.append(f"{where}: {field}[{i}] ({t.name}).dims: {list(t.dims)}, but lob.contract has "
                                f"{dims[t.name]} (N_LEVELS {contract.N_LEVELS}, horizons {contract.HORIZONS} x "
                                f"classes {contract.CLASSES}, the time axis -1 first)")
            elif t.name in contract.TENSORS and t.name not in dims and (len(t.dims) != 2 or t.dims[0] != -1):
                problems.append(f"{where}: {field}[{i}] ({t.name}).dims: {list(t.dims)}, but lob.contract has "
                                "[-1, size]: the time axis -1 first, then the model's size")
    for s, step in enumerate(cfg.ensemble_scheduling.step):
        if step.model_name not in contract.MODELS:
            problems.append(f"{where}: ensemble_scheduling.step[{s}].model_name: '{step.model_name}' is not a model "
                            f"of lob.contract (MODELS: {list(contract.MODELS)})")
    if "end_step_models" in cfg.parameters:
        for name in filter(None, cfg.parameters["end_step_models"].string_value.split(",")):
            if name not in contract.STEP_MODELS:
                problems.append(f"{where}: parameters[end_step_models]: '{name}' is not a step model of lob.contract "
                                f"(STEP_MODELS: {list(contract.STEP_MODELS)})")


def _check_model_files(model: _Model, problems: list[str]) -> None:
    filename = model.config.default_model_filename or _DEFAULT_FILE.get(model.kind)
    if filename is None:
        return  # a backend this tool does not know: nothing to say about its files
    for version in _versions(model):
        path = version / filename
        if not path.exists():
            if filename not in BUILD_PRODUCTS:
                problems.append(f"{path}: missing (default file of {model.kind} models)")
            continue
        if model.kind == "python":
            _check_python(path, problems)
        elif filename.endswith(".onnx"):
            _check_onnx(model, path, problems)


def _check_python(path: Path, problems: list[str]) -> None:
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        problems.append(f"{path}:{err.lineno}: syntax error: {err.msg}")
        return
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TritonPythonModel":
            if not any(isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name == "execute"
                       for f in node.body):
                problems.append(f"{path}: TritonPythonModel.execute: not defined")
            return
    problems.append(f"{path}: TritonPythonModel: no such class at module level")


# ------------------------------------------------------------------------------------------------------- ONNX

def _onnx_io(path: Path) -> tuple[dict, dict]:
    """({input name: (elem_type, dims)}, {output name: ...}); dims hold None where the model's dim is symbolic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def spec(value_info):
        t = value_info.type.tensor_type
        return t.elem_type, tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)

    return ({v.name: spec(v) for v in graph.input if v.name not in initializers},
            {v.name: spec(v) for v in graph.output})


def _onnx_mismatch(model: _Model, data_type: int, dims, onnx_spec) -> str | None:
    """Why an ONNX tensor does not fit the config's data_type and dims, or None."""
    import onnx

    elem, onnx_dims = onnx_spec
    if _ONNX_TYPE.get(data_type) != elem:
        return (f"data_type {mc.DataType.Name(data_type)} but the ONNX tensor is "
                f"{onnx.TensorProto.DataType.Name(elem)}")
    want = model.shape(dims)
    shown = tuple("?" if d is None else d for d in onnx_dims)
    if len(want) != len(onnx_dims):
        return f"shape {list(want)} (batch dim first) but the ONNX tensor is {list(shown)}"
    if model.config.max_batch_size > 0 and onnx_dims[0] is not None:
        return f"max_batch_size {model.config.max_batch_size} needs a dynamic first dim; the ONNX tensor is {list(shown)}"
    for w, d in zip(want, onnx_dims):
        if d is not None and w != d:  # a symbolic ONNX dim takes any config value; a fixed one must match
            return f"shape {list(want)} (batch dim first) but the ONNX tensor is {list(shown)}"
    return None


def _check_onnx(model: _Model, path: Path, problems: list[str]) -> None:
    cfg, where = model.config, model.config_path
    try:
        inputs, outputs = _onnx_io(path)
    except Exception as err:  # onnx raises DecodeError, OSError, ... for a corrupt file
        problems.append(f"{path}: unreadable ONNX model: {err}")
        return
    seq = cfg.sequence_batching
    # (config field, tensor name, data_type, dims, ONNX side)
    expected = [(f"input[{i}] ({t.name})", t.name, t.data_type, t.dims, inputs) for i, t in enumerate(cfg.input)]
    expected += [(f"output[{i}] ({t.name})", t.name, t.data_type, t.dims, outputs) for i, t in enumerate(cfg.output)]
    for i, s in enumerate(seq.state):
        expected.append((f"sequence_batching.state[{i}].input_name ({s.input_name})", s.input_name, s.data_type,
                         s.dims, inputs))
        expected.append((f"sequence_batching.state[{i}].output_name ({s.output_name})", s.output_name, s.data_type,
                         s.dims, outputs))
    for i, c in enumerate(seq.control_input):
        dtype = next((k.data_type for k in c.control if k.data_type != mc.TYPE_INVALID), mc.TYPE_INT32)
        expected.append((f"sequence_batching.control_input[{i}] ({c.name})", c.name, dtype, (1,), inputs))
    for field, name, dtype, dims, side in expected:
        if name not in side:
            kind = "input" if side is inputs else "output"
            problems.append(f"{where}: {field}: {path.name} has no {kind} '{name}' (it has {sorted(side)})")
            continue
        why = _onnx_mismatch(model, dtype, dims, side[name])
        if why:
            problems.append(f"{where}: {field}: {why} in {path}")
    fed = {e[1] for e in expected if e[4] is inputs}
    for name in sorted(set(inputs) - fed):
        problems.append(f"{where}: input: {path} input '{name}' is fed by nothing in the config "
                        "(neither an input nor a sequence_batching state/control)")
    declared = {s.output_name for s in seq.state}
    for name in sorted(n for n in outputs if _state_side(n) == "OUT" and n not in declared):
        problems.append(f"{where}: sequence_batching.state: {path} output '{name}' is a state that no entry "
                        "feeds back (the next tick would start from the initial state)")
    for i, s in enumerate(seq.state):
        if s.input_name in inputs and s.output_name in outputs and inputs[s.input_name] != outputs[s.output_name]:
            problems.append(f"{where}: sequence_batching.state[{i}]: {path} state pair {s.input_name} "
                            f"{inputs[s.input_name]} / {s.output_name} {outputs[s.output_name]} differ "
                            "(elem_type, dims): the output cannot be fed back as the next input")


# ------------------------------------------------------------------------------------------- sequence batching

def _check_sequence_batching(model: _Model, problems: list[str]) -> None:
    cfg, where = model.config, model.config_path
    if not cfg.HasField("sequence_batching"):
        return
    seq = cfg.sequence_batching
    kinds = {k.kind for c in seq.control_input for k in c.control}
    if model.kind == "python":
        if seq.state:
            problems.append(f"{where}: sequence_batching.state: the python backend has no implicit state "
                            "(server issue #8006); keep per-sequence state in the model, keyed by CORRID")
        for kind, label in _PYTHON_CONTROLS.items():
            if kind not in kinds:
                problems.append(f"{where}: sequence_batching.control_input: no {label} control "
                                f"({_Kind.Kind.Name(kind)}); a python model keeps its own per-sequence state "
                                "and needs START, END and CORRID to create, reset and free it")
    for i, c in enumerate(seq.control_input):
        for k in c.control:
            if k.kind == _Kind.CONTROL_SEQUENCE_CORRID and k.data_type == mc.TYPE_INVALID:
                problems.append(f"{where}: sequence_batching.control_input[{i}] ({c.name}).data_type: "
                                "CORRID needs TYPE_UINT64 or TYPE_STRING")
    for i, s in enumerate(seq.state):
        if not (s.input_name and s.output_name):
            problems.append(f"{where}: sequence_batching.state[{i}]: input_name and output_name are both needed")
        elif not _is_state_pair(s.input_name, s.output_name):
            problems.append(f"{where}: sequence_batching.state[{i}] ({s.input_name} / {s.output_name}): names must "
                            "be STATE_<NAME>_IN / STATE_<NAME>_OUT with the same NAME (what `lob export` writes, and "
                            "what keeps both sort orders equal)")
        if s.data_type == mc.TYPE_INVALID or not s.dims:
            problems.append(f"{where}: sequence_batching.state[{i}] ({s.input_name}): data_type and dims are needed")
        if s.data_type != mc.TYPE_INVALID and s.data_type not in _STATE_DTYPES:
            problems.append(f"{where}: sequence_batching.state[{i}] ({s.input_name}).data_type: "
                            f"{mc.DataType.Name(s.data_type)} is not a state Triton can hold (fixed-size tensors only)")
        if not s.initial_state and _Kind.CONTROL_SEQUENCE_START not in kinds:
            problems.append(f"{where}: sequence_batching.state[{i}] ({s.input_name}).initial_state: not set and "
                            "no START control: the state of a new sequence would be undefined")
        for j, init in enumerate(s.initial_state):
            field = f"sequence_batching.state[{i}] ({s.input_name}).initial_state[{j}]"
            if init.data_type != s.data_type:
                problems.append(f"{where}: {field}.data_type: {mc.DataType.Name(init.data_type)} but the state is "
                                f"{mc.DataType.Name(s.data_type)}")
            if list(init.dims) != list(s.dims):
                problems.append(f"{where}: {field}.dims: {list(init.dims)} but the state is {list(s.dims)}")
            if not (init.zero_data or init.data_file):
                problems.append(f"{where}: {field}: neither zero_data nor data_file is set")
    # Triton pairs state inputs with outputs by sorted name (server issue #8586): both orders must agree.
    by_input = [s.output_name for s in sorted(seq.state, key=lambda s: s.input_name)]
    if by_input != sorted(by_input):
        problems.append(f"{where}: sequence_batching.state: input names {sorted(s.input_name for s in seq.state)} "
                        f"and output names {sorted(by_input)} sort in different orders; Triton pairs states by "
                        "sorted name and would swap them (server issue #8586)")


def _state_side(tensor: str) -> str | None:
    """"IN" or "OUT" for a state tensor name (STATE_<NAME>_IN / _OUT), None for any other name."""
    parsed = parse_state_name(tensor)
    return None if parsed is None else parsed[1]


def _is_state_pair(input_name: str, output_name: str) -> bool:
    """Whether the names are `lob.contract.state_names` of one state: STATE_<NAME>_IN, STATE_<NAME>_OUT."""
    parsed = parse_state_name(input_name)
    return parsed is not None and state_names(parsed[0]) == (input_name, output_name)


def _check_states_agree(models: list[_Model], problems: list[str]) -> None:
    """One state input name, one declaration: a CPU and a GPU config of one step cannot disagree on it."""
    first: dict[str, tuple[_Model, bytes]] = {}
    for model in models:
        for i, s in enumerate(model.config.sequence_batching.state):
            blob = s.SerializeToString(deterministic=True)
            seen = first.setdefault(s.input_name, (model, blob))
            if seen[1] != blob:
                problems.append(f"{model.config_path}: sequence_batching.state[{i}] ({s.input_name}): declared "
                                f"differently in {seen[0].config_path} (dtype, dims, output name or initial_state)")


# ---------------------------------------------------------------------------------------------------- ensembles

def _check_ensemble(ens: _Model, models: dict[str, _Model | None], problems: list[str]) -> None:
    cfg, where = ens.config, ens.config_path
    steps = cfg.ensemble_scheduling.step
    if not steps:
        problems.append(f"{where}: ensemble_scheduling.step: empty")
        return
    # ensemble tensor -> (where it comes from, data_type, full shape); None, None from a broken member config
    produced: dict[str, tuple[str, int | None, tuple | None]] = {}

    def produce(tensor: str, origin: str, dtype: int, shape: tuple) -> None:
        if tensor in produced:
            problems.append(f"{where}: {origin}: tensor '{tensor}' is produced twice (also by {produced[tensor][0]})")
        else:
            produced[tensor] = (origin, dtype, shape)

    for i, t in enumerate(cfg.input):
        produce(t.name, f"input[{i}]", t.data_type, ens.shape(t.dims))
    consumers: list[tuple[str, str, int, tuple]] = []  # (field, tensor, data_type, shape)
    for s, step in enumerate(steps):
        field = f"ensemble_scheduling.step[{s}] ({step.model_name})"
        if step.model_name not in models:
            problems.append(f"{where}: {field}.model_name: no model '{step.model_name}' in {where.parent.parent}")
            continue
        member = models[step.model_name]
        if member is None:  # its config is broken, already reported: its tensors are unknown
            produced.update({t: (field, None, None) for t in step.output_map.values()})
            continue
        if step.model_version != -1 and not (member.folder / str(step.model_version)).is_dir():
            problems.append(f"{where}: {field}.model_version: {member.folder}/{step.model_version} does not exist")
        if member.config.max_batch_size < cfg.max_batch_size:
            problems.append(f"{where}: max_batch_size: {cfg.max_batch_size} exceeds {step.model_name}'s "
                            f"{member.config.max_batch_size}")
        member_in = {t.name: t for t in member.config.input}
        member_out = {t.name: t for t in member.config.output}
        for name, t in member_in.items():
            if name not in step.input_map and not t.optional:
                problems.append(f"{where}: {field}.input_map: {step.model_name} input '{name}' is not mapped")
        for name, tensor in step.input_map.items():
            if name not in member_in:
                problems.append(f"{where}: {field}.input_map: {step.model_name} has no input '{name}'")
            else:
                t = member_in[name]
                consumers.append((f"{field}.input_map[{name}]", tensor, t.data_type, member.shape(t.dims)))
        for name, tensor in step.output_map.items():
            if name not in member_out:
                problems.append(f"{where}: {field}.output_map: {step.model_name} has no output '{name}'")
            else:
                t = member_out[name]
                produce(tensor, f"{field}.output_map[{name}]", t.data_type, member.shape(t.dims))
    for i, t in enumerate(cfg.output):
        consumers.append((f"output[{i}]", t.name, t.data_type, ens.shape(t.dims)))
    consumed = {tensor for _, tensor, _, _ in consumers}
    for i, t in enumerate(cfg.input):
        if t.name not in consumed:
            problems.append(f"{where}: input[{i}] ({t.name}): no step consumes it")
    for field, tensor, dtype, shape in consumers:
        if tensor not in produced:
            problems.append(f"{where}: {field}: tensor '{tensor}' is produced by nothing")
            continue
        origin, p_dtype, p_shape = produced[tensor]
        if p_dtype is None:
            continue
        if dtype != p_dtype:
            problems.append(f"{where}: {field}: tensor '{tensor}' is {mc.DataType.Name(p_dtype)} from {origin} "
                            f"but consumed as {mc.DataType.Name(dtype)}")
        elif not _shapes_agree(shape, p_shape):
            problems.append(f"{where}: {field}: tensor '{tensor}' has shape {list(p_shape)} from {origin} "
                            f"but is consumed as {list(shape)}")


def _check_one_step_at_a_time(ens: _Model, problems: list[str]) -> None:
    """No two steps of the ensemble become ready together. Triton core r24.10's ``EnsembleContext::ScheduleSteps``
    decrements the ensemble's request counter for steps it never scheduled when an earlier step of the same
    batch is refused at once, which can release the ensemble's request early (fixed in core #482/#483, r26.04).
    Replays the schedule one step at a time: each step must be the only one whose inputs are all available."""
    steps = list(enumerate(ens.config.ensemble_scheduling.step))
    available = {t.name for t in ens.config.input}
    while steps:
        ready = [(s, step) for s, step in steps if set(step.input_map.values()) <= available]
        if not ready:  # a tensor no step produces: _check_ensemble reports it
            return
        if len(ready) > 1:
            names = ", ".join(f"step[{s}] ({step.model_name})" for s, step in ready)
            problems.append(f"{ens.config_path}: ensemble_scheduling: {names} start together (their inputs are all "
                            "available at once); Triton r24.10's EnsembleContext::ScheduleSteps can then release the "
                            "ensemble's request early when the first is refused (core #482/#483, fixed in r26.04): "
                            "chain them so each step consumes an output of the one before")
            return
        (s, step), = ready
        steps.remove((s, step))
        available |= set(step.output_map.values())


def _shapes_agree(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))
