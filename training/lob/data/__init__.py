"""Market data: the canonical tick table (`schema`), the L2 simulator (`simulator`; its instruments fitted to
real days and their params format: `instruments`) and importers of real
formats: LOBSTER (`lobster`; and back out to LOBSTER CSVs with synthetic order ids: `lobster_export`), Binance
bookTicker and aggTrades (`binance`), over one CSV reader that names the file, line and field of every fault
(`csvio`), and Binance websocket sessions (`binance_ws`: the one L2 book builder from a snapshot and depth diffs,
and the importer of recorded sessions).

Imports numpy, pyarrow, `lob.contract` and `lob.io` only; never torch, never another `lob` subpackage.
"""
