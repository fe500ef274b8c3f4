"""Market data: the canonical tick table (`schema`), the L2 simulator and importers of real formats.

Imports numpy, pyarrow, `lob.contract` and `lob.io` only; never torch, never another `lob` subpackage.
"""
