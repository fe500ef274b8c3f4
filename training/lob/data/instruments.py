"""Fitted instruments: the params JSON of `lob calibrate` (format ``lob-instrument/1``), its reader, and the
default market of `lob simulate` built from the instruments fitted to real days (``fitted/*.json``).

A params JSON: ``{"format": "lob-instrument/1", "instrument": {SymbolSpec fields}, "events_per_day": N,
"fitted_to": ..., "moments": {name: [real, simulated]}}`` (``lob.realism.calibrate`` writes it).

The default market of `lob simulate` (``lob.data.simulator.symbol_specs(..., instruments="calibrated")``): symbol
i (SIMA, SIMB, ...) is fitted instrument ``DEFAULT_FITS[i % 2]`` (``fitted_specs``; GOOG: 10 levels, spreads around
30 ticks on GOOG's lattice of level gaps; AAPL: fitted through its 1 level, spreads around 17 ticks), at 1.7x the
price each round, with its fitted sizes and Hawkes clock. The archetypes stay ``--instruments archetypes``.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, fields
from pathlib import Path

from lob.data.simulator import SymbolSpec

FORMAT = "lob-instrument/1"
FITTED = Path(__file__).with_name("fitted")  # <SYMBOL>.json: `lob calibrate --data real:SYMBOL@train` of the
# LOBSTER samples of 2012-06-21 (docs/results.md)
DEFAULT_FITS = ("GOOG", "AAPL")


def load_params(path: Path) -> tuple[SymbolSpec, int]:
    """A params JSON of `lob calibrate` -> (SymbolSpec, events per day). ValueError names what is wrong."""
    path = Path(path)
    try:
        params = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable params JSON ({err})") from None
    if not isinstance(params, dict) or params.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}")
    inst = params.get("instrument")
    known = {f.name: f for f in fields(SymbolSpec)}
    if not isinstance(inst, dict):
        raise ValueError(f"{path}: field 'instrument' missing")
    unknown = sorted(set(inst) - set(known))
    missing = sorted(k for k, f in known.items() if k not in inst and f.default is MISSING)
    if unknown or missing:
        raise ValueError(f"{path}: instrument field(s) {'unknown ' + str(unknown) if unknown else 'missing ' + str(missing)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in inst.items()}
    spec = SymbolSpec(**values)
    for k in ("price", "tick_size", "lot_size", "depth", "limit_size", "market_size", "session_s"):
        v = getattr(spec, k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{path}: instrument field {k!r} must be a positive number, got {v!r}")
    for k in ("inside_rate", "market_mult", "cancel_mult"):
        v = getattr(spec, k)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{path}: instrument field {k!r} must be a number >= 0, got {v!r}")
    if not (isinstance(spec.grid_ticks, int) and spec.grid_ticks >= 1):
        raise ValueError(f"{path}: instrument field 'grid_ticks' must be an integer >= 1, got {spec.grid_ticks!r}")
    g = spec.level_gaps
    if g and not (all(isinstance(x, (int, float)) and x >= 0 for x in g) and sum(g) > 0 and spec.grid_ticks == 1):
        raise ValueError(f"{path}: instrument field 'level_gaps' must be probabilities >= 0 with a positive sum "
                         f"(and grid_ticks 1), got {g!r}")
    for k in ("limit_sizes", "market_sizes"):
        if not all(isinstance(x, int) and x >= 1 for x in getattr(spec, k)):
            raise ValueError(f"{path}: instrument field {k!r} must hold whole lots >= 1, got {getattr(spec, k)!r}")
    b, d = spec.clock_branching, spec.clock_decay_s
    if len(b) != len(d) or any(x < 0 for x in b) or sum(b) >= 1 or any(x <= 0 for x in d):
        raise ValueError(f"{path}: clock_branching must be >= 0 summing to < 1, one positive clock_decay_s each")
    events = params.get("events_per_day")
    if not (isinstance(events, int) and events >= 2):
        raise ValueError(f"{path}: field 'events_per_day' must be an integer >= 2, got {events!r}")
    return spec, events


def fitted_specs() -> list[SymbolSpec]:
    """The fitted instruments of the default market, ``DEFAULT_FITS`` in order (``FITTED/<name>.json``)."""
    return [load_params(FITTED / f"{name}.json")[0] for name in DEFAULT_FITS]
