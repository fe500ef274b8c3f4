"""The options of `lobclient.stream` / `astream`, grouped: how to reach the server (`Transport`, `TLS`) and
how to ride through its faults (`Recovery`; docs/serving.md, "Re-warm, reconnect")."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional, Union

from .contract import MAX_CHUNK

Pem = Union[bytes, str, os.PathLike, None]  # PEM bytes, or the path of a PEM file
DEFAULT_REWARM_TICKS = 4096  # smallest with max |dp| <= 0.01 vs uninterrupted (bench/rewarm.md)
DEFAULT_REWARM_CHUNK = MAX_CHUNK  # ticks per re-warm request: 1024 re-warmed fastest (bench/recovery.md)


@dataclass(frozen=True)
class Recovery:
    """``rewarm``: rebuild a symbol's lost server state by replaying its last ``rewarm_ticks`` accepted ticks,
    ``rewarm_chunk`` of them per request (docs/serving.md, "Re-warm"); ``reconnect``: reopen a broken connection, waiting ``backoff_s`` = (first, max) seconds between attempts
    (doubling), and fail every unanswered tick after ``reconnect_deadline_s`` without a connection."""

    rewarm: bool = True
    rewarm_ticks: int = DEFAULT_REWARM_TICKS
    rewarm_chunk: int = DEFAULT_REWARM_CHUNK
    reconnect: bool = True
    reconnect_deadline_s: float = 30.0
    backoff_s: tuple[float, float] = (0.05, 2.0)

    def __post_init__(self) -> None:
        if self.rewarm_ticks < 1:
            raise ValueError(f"Recovery.rewarm_ticks must be >= 1, got {self.rewarm_ticks}")
        if not 1 <= self.rewarm_chunk <= MAX_CHUNK:
            raise ValueError(f"Recovery.rewarm_chunk must be in [1, {MAX_CHUNK}], got {self.rewarm_chunk}")
        if not 0 < self.backoff_s[0] <= self.backoff_s[1]:
            raise ValueError(f"Recovery.backoff_s must be (first, max) with 0 < first <= max, got {self.backoff_s}")


@dataclass(frozen=True)
class TLS:
    """gRPC over TLS: ``root_certificates`` the CA to trust (None: the system's); ``private_key`` +
    ``certificate_chain`` the client's, for mutual TLS. ``tls=None`` in `stream` means plaintext."""

    root_certificates: Pem = None
    private_key: Pem = None
    certificate_chain: Pem = None

    def __post_init__(self) -> None:
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("TLS: mutual TLS needs both private_key and certificate_chain")


@dataclass(frozen=True)
class Transport:
    """``kind``: ``"unary"`` (one ``ModelInfer`` call per tick; the default, safe against any Triton) or
    ``"stream"`` (one ``ModelStreamInfer`` stream per connection; the server must run with
    ``--grpc-infer-allocation-pool-size`` above its in-flight requests, as ``lob serve`` does: docs/serving.md,
    "Crash safety"). ``window``: ticks read ahead of the consumer, in all. ``timeout_s``: a tick
    without an answer after that long fails. ``shards``: spread the symbols over that many connections, each
    with the metadata ``x-lob-shard: <shard>`` for a consistent-hash proxy (None: one connection, no header).
    ``metadata``: more gRPC call metadata for every call."""

    kind: Literal["unary", "stream"] = "unary"
    window: int = 1024
    timeout_s: float = 10.0
    shards: Optional[int] = None
    metadata: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("unary", "stream"):
            raise ValueError(f"Transport.kind must be 'unary' or 'stream', got {self.kind!r}")
        if self.window < 1:
            raise ValueError(f"Transport.window must be >= 1, got {self.window}")
        if self.timeout_s <= 0:
            raise ValueError(f"Transport.timeout_s must be > 0, got {self.timeout_s}")
        if self.shards is not None and (not isinstance(self.shards, int) or self.shards < 1):
            raise ValueError(f"Transport.shards must be a positive int or None, got {self.shards!r}")
        object.__setattr__(self, "metadata", tuple(tuple(kv) for kv in self.metadata))
