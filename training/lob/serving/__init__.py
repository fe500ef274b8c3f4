"""Serving glue: the tritonserver launcher (`launcher`), the replay client (`replay`, over `lobclient`) and
the signal sidecar that keeps each symbol's latest prediction in Redis (`signal`), the live terminal view of
a server and its signals (`top`, `lob top`), the live Binance feed (`live`, `lob live binance`: websocket
streams -> `lob.data.binance_ws.BookBuilder` -> the server or the sidecar), and the served model run in this
process with no network hop (`inprocess`: the build repository's tokenizer.json and step ONNX in onnxruntime,
same predictions as the server).

May import `lob.contract`, `lob.io`, `lob.data`, `lob.tokenizer`; never models, training, evaluation or export
(a serving host installs no torch).
"""
