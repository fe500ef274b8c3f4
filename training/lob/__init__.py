"""Mamba-LOB: tick data, tokenizer, models, training, evaluation, export and serving glue.

Subpackages in lifecycle order; each may import only the ones before it (`tests/unit/test_layout.py`):

    contract    horizons, direction classes, served tensor names (stdlib only)
    io          artifact I/O: atomic files and folders, JSON, sha256, predictions table  pyarrow
    data        canonical tick table, simulator, importers          numpy, pyarrow
    tokenizer   one token + features per tick; what Triton imports  numpy (`lobtick`'s, from ./client)
    realism     stylized facts, distances, calibration of the simulator  numpy, scipy
    models      Mamba-LOB, Transformer, hybrid; shared embedding / heads  torch
    training    split, labels, loss, train loop, run folder         torch
    evaluation  baselines, metrics, bootstrap, backtest, evaluate, walk-forward, compare, predict,
                generate                                            torch
    export      ONNX / FP16 / TensorRT step models, repository, validate
    serving     tritonserver launcher, replay through lobclient     never imports models/training/evaluation

Beside them, `cli` is the `lob` command (one thin command per module function). Importing ``lob``,
``lob.data``, ``lob.tokenizer`` or ``lob.serving`` never imports torch. The tick (``Ticks``, ``validate``) and the
tokenizer are `lobtick`'s (numpy only, shipped in the client distribution: ``pip install . ./client``), which the
client's direct path runs too.
"""
__version__ = "0.1.0"
