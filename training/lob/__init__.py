"""Mamba-LOB training side. Importing ``lob`` (or ``lob.tokenizer``) never imports torch: the
Triton Python backend imports the tokenizer from here unchanged."""
__version__ = "0.1.0"
