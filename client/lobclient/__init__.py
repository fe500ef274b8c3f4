"""lobclient: stream ticks of many symbols to Mamba-LOB on Triton; one prediction per tick, in input order.

    import lobclient
    for p in lobclient.stream(ticks, url="localhost:8001"):
        print(p.symbol, p.seq, p.error or p.dir_probs[0])   # P(down, flat, up) 10 ticks ahead
"""
from .protocol import sequence_id
from .records import HORIZONS, N_LEVELS, Prediction, Tick, TickFailed
from .stream import astream, stream

__all__ = ["Tick", "Prediction", "TickFailed", "stream", "astream", "sequence_id", "HORIZONS", "N_LEVELS"]
