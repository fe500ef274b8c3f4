"""Runs `lobclient.stream` in another environment for `test_client_env.py` (there: .venv-client, the client's
wheel beside the newest numpy 2 and tritonclient; imports nothing but lobclient, its lobtick and numpy).

    python client_driver.py --versions                     # one JSON line: versions, where lobclient lives
    python client_driver.py TICKS.npz OUT.npz OPTIONS.json  # stream the ticks, write the predictions

TICKS.npz: ``symbol`` (N,) str, ``ts_ns`` (N,) int64, ``bid_px``/``bid_sz``/``ask_px``/``ask_sz`` (N, 10) float64,
``trade_px``/``trade_sz`` (N,) float64, ``trade_side`` (N,) int8. OPTIONS.json: ``url``, optional ``model``,
``tokenizer``, ``transport``/``recovery``/``tls`` (keyword arguments of `lobclient.Transport`/`Recovery`/`TLS`)
and ``pause_at``: before yielding that tick the driver prints ``PAUSED`` and waits for a line on stdin.
OUT.npz: ``symbol``, ``ts_ns``, ``seq``, ``ok``, ``warm`` (N,), ``error`` (N,) str ("" when ok), ``dir_probs``
(N, 3, 3) float32, ``topk_ids`` (N, 5), ``topk_probs`` (N, 5) (zeros where refused).
"""
from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

import lobclient
import lobtick

DISTRIBUTIONS = ("lobclient", "numpy", "tritonclient", "protobuf", "grpcio")


def versions() -> dict:
    """Python and the resolved versions of the client's dependencies; where lobclient and lobtick are imported from."""
    try:
        import lob  # noqa: F401  (only to report whether the server package is importable here)
        has_lob = True
    except ImportError:
        has_lob = False
    return {"python": sys.version.split()[0], **{d: version(d) for d in DISTRIBUTIONS},
            "lobclient.__version__": lobclient.__version__, "lobclient_dir": str(Path(lobclient.__file__).parent),
            "lobtick_dir": str(Path(lobtick.__file__).parent),
            "lob_importable": has_lob}


def run(ticks_npz: Path, out_npz: Path, options_json: Path) -> None:
    t = np.load(ticks_npz)
    opts = json.loads(options_json.read_text())
    pause_at = opts.pop("pause_at", None)
    for name, cls in (("transport", lobclient.Transport), ("recovery", lobclient.Recovery), ("tls", lobclient.TLS)):
        if name in opts:
            opts[name] = cls(**opts[name])

    def feed():
        for i in range(len(t["ts_ns"])):
            if i == pause_at:
                print("PAUSED", flush=True)
                sys.stdin.readline()
            yield lobclient.Tick(str(t["symbol"][i]), int(t["ts_ns"][i]), t["bid_px"][i], t["bid_sz"][i],
                                 t["ask_px"][i], t["ask_sz"][i], float(t["trade_px"][i]), float(t["trade_sz"][i]),
                                 int(t["trade_side"][i]))

    preds = list(lobclient.stream(feed(), **opts))
    if "lob" in sys.modules:  # the direct path tokenizes with lobtick, never with the server package
        raise RuntimeError("lobclient imported the server package lob")
    ok = np.array([p.ok for p in preds], bool)
    np.savez(out_npz, symbol=np.array([p.symbol for p in preds]), ts_ns=np.array([p.ts_ns for p in preds], np.int64),
             seq=np.array([p.seq for p in preds], np.int64), ok=ok, warm=np.array([bool(p.warm) for p in preds]),
             error=np.array([p.error or "" for p in preds]),
             dir_probs=np.stack([p.dir_probs if p.ok else np.zeros((3, 3), np.float32) for p in preds]),
             topk_ids=np.stack([p.topk_ids if p.ok else np.zeros(5, np.int64) for p in preds]),
             topk_probs=np.stack([p.topk_probs if p.ok else np.zeros(5, np.float32) for p in preds]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--versions"]:
        print(json.dumps(versions()))
    else:
        run(*map(Path, sys.argv[1:4]))
