"""lobtick: the tick and its tokenizer, numpy only: the ONE implementation that training, the Triton server
(``lob.tokenizer``, ``lob.data.schema`` and the python model ``lob_tokenizer`` build on it) and the client's
direct path (``lobclient.protocol.DirectRequests``) run. Shipped in the ``lobclient`` distribution
(``pip install ./client``) and imported by nothing heavier than numpy, so both sides can depend on it.

Modules (import them directly; this package imports nothing):
- `ticks`: ``Ticks`` (columnar ticks of one symbol), ``validate`` (names the bad row and field), ``TickDataError``,
  ``N_LEVELS``
- `features`: the per-tick formula both tokenizer paths run (``advance_one``, ``advance``, ``TokenizerState``, ``EVENT_CLASSES``)
- `tokenizer`: ``Tokenizer`` (fit, batch ``transform``, streaming ``step``/``step_batch``/``step_chunk``, versioned
  JSON), ``TickInput``, ``TickError``
- `io`: ``atomic_write`` (``lob.io`` re-exports it)
"""
