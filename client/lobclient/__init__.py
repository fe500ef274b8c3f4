"""lobclient: stream ticks of many symbols to Mamba-LOB on Triton; one prediction per tick."""
