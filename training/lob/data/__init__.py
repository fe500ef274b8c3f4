"""Market data: the canonical tick table (`schema`), the L2 simulator and importers of real formats.

Imports numpy, pyarrow and `lob.contract` only; never torch, never another `lob` subpackage.
"""
