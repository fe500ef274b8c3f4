"""TransformerLOB: a GPT/Llama-style decoder over order-book event tokens, with direction heads.

Same inputs, heads and losses as Mamba-LOB (`lob.models.base`); between them ``n_layer`` pre-norm blocks::

    h = h + Attention(RMSNorm(h))      # causal, grouped-query (n_head queries share n_kv_head K/V heads),
                                       # RoPE on q and k, sliding window of ``window`` (W) ticks
    h = h + SwiGLU(RMSNorm(h))         # w_down(silu(gate) * up), hidden d_ff

Attention sees the last W ticks (itself included) in training and in serving alike, so the served model
is the trained one. Streaming state, two forms, both ``(K, V, POS)``:

- ``ring`` (served): K, V (B, n_layer, n_kv_head, W, head_dim) circular buffers; tick p goes to slot
  s = p mod W; POS (B, 1) int64 counts ticks seen. Fixed size: Triton implicit state. A key is stored
  rotated at its *slot's* angle s, not at p: a RoPE score depends only on the angle difference, and a
  query at p scores a key of its own lap (s <= p mod W) at angle p mod W and a key of the lap before at
  p mod W + W, which both give the true offset. So a step rotates its key once and its query twice, with
  angles < 2W read from a constant float32 table, and scores the ring in one pass with both queries.
  No angle in the served graph grows with the tick index: it is float32 throughout (TensorRT, FP16) and
  exact at any position, where a float32 position x frequency is off by ~0.05 rad at 1e6.
- ``full``: K, V (B, n_layer, n_kv_head, T, head_dim) grow by one tick per step and every past tick is
  attended (no window): the unbounded-context decoder whose per-tick cost grows with T (bench/step_cost.py).
  Its keys are rotated at their absolute position when written, angles computed in float64 (Llama's cache).
  Within the first W ticks it equals the ring.

``forward`` (training, evaluation) rotates queries and keys at positions relative to the chunk's first
tick (a carried ring's keys re-rotated from their slot angle), angles in float64: exact wherever the chunk
starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lob.models.base import HeadConfig, TickConfig, TickModel

Tensor = torch.Tensor
CACHES = ("ring", "full")


# ---------------------------------------------------------------------------------------------- config

@dataclass
class AttentionFields(TickConfig):
    """The attention layers' fields: d_model splits into n_head heads of even size (RoPE), n_kv_head divides
    n_head."""

    n_head: int = 4
    n_kv_head: int = 2
    d_ff: int | str = "auto"  # "auto" -> 8/3 d_model rounded up to a multiple of 8 (Llama's SwiGLU width)
    window: int = 128  # W: ticks each tick attends to (itself included), the ring's size; measured: README
    rope_theta: float = 10_000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_ff == "auto":
            self.d_ff = 8 * math.ceil(8 * self.d_model / 3 / 8)
        self.check_positive("n_head", "n_kv_head", "d_ff", "window")
        name = type(self).__name__
        if self.d_model % self.n_head or self.head_dim % 2:
            raise ValueError(f"{name}: d_model={self.d_model} must split into n_head={self.n_head} heads of even "
                             "size (RoPE)")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"{name}: n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        if not self.rope_theta > 1:
            raise ValueError(f"{name}.rope_theta must be > 1, got {self.rope_theta!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


@dataclass
class TransformerLOBConfig(HeadConfig, AttentionFields):
    pass


# Sizes only (vocab_size, n_features from the tokenizer); same d_model x layers as Mamba-LOB's presets.
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=32, n_layer=2, n_head=4, n_kv_head=2),
    "small": dict(d_model=96, n_layer=3, n_head=6, n_kv_head=2),
    "base": dict(d_model=192, n_layer=6, n_head=6, n_kv_head=2),
}


# ---------------------------------------------------------------------------------------------- blocks

class Rotary(nn.Module):
    """RoPE (rotate-half layout, as Llama): cos/sin of position x inv_freq, angles in float64.

    ``table_cos``, ``table_sin`` (2W, hd/2) hold the same for positions 0..2W-1, computed once: what the
    ring's step reads."""

    def __init__(self, head_dim: int, theta: float, window: int):
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        angle = torch.arange(2 * window, dtype=torch.float64)[:, None] * inv_freq  # (2W, hd/2)
        self.register_buffer("table_cos", angle.cos().float(), persistent=False)
        self.register_buffer("table_sin", angle.sin().float(), persistent=False)

    def forward(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """pos (...) int64 -> cos, sin (..., 1, hd/2) float32 (the 1 broadcasts over heads)."""
        angle = pos.to(torch.float64)[..., None, None] * self.inv_freq
        return angle.cos().float(), angle.sin().float()

    def lookup(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """pos (...) int64 in [0, 2W) -> cos, sin (..., hd/2) float32, equal to ``forward``'s, by table lookup."""
        return self.table_cos[pos], self.table_sin[pos]


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., heads, hd) rotated by cos/sin (..., 1, hd/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """Causal grouped-query self-attention with RoPE over a sliding window of ``window`` ticks."""

    def __init__(self, cfg: AttentionFields):
        super().__init__()
        self.n_head, self.n_kv_head, self.window = cfg.n_head, cfg.n_kv_head, cfg.window
        self.head_dim = hd = cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * hd, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * hd, cfg.d_model, bias=False)
        self.rotary = Rotary(hd, cfg.rope_theta, cfg.window)

    def _qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h (..., d_model) -> q (..., H, hd), k, v (..., Hkv, hd), before RoPE."""
        return self.qkv_proj(h).unflatten(-1, (-1, self.head_dim)).split(
            [self.n_head, self.n_kv_head, self.n_kv_head], dim=-2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool = False) -> Tensor:
        """q (B, H, Lq, hd), k/v (B, Hkv, Lk, hd), mask (B, 1, Lq, Lk) bool or None -> (B, Lq, H*hd) projected."""
        groups = self.n_head // self.n_kv_head
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, Lk, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # (B, H, Lq, hd)
        return self.o_proj(y.transpose(1, 2).flatten(-2))

    def forward(self, h: Tensor, k_ring: Tensor | None, v_ring: Tensor | None,
                pos: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """h (B, L, d_model) at positions pos + 0..L-1 (pos (B, 1) int64; None: a fresh sequence at 0),
        ring k/v (B, Hkv, W, hd) of the ticks before (None: empty) -> (out (B, L, d_model), new k_ring, v_ring).
        RoPE at positions relative to pos (the chunk's first tick is 0, the ring's ticks are negative)."""
        B, L, W = h.shape[0], h.shape[1], self.window
        p0 = torch.zeros(B, 1, dtype=torch.int64, device=h.device) if pos is None else pos
        t = torch.arange(L, device=h.device)  # (L,) positions relative to the chunk's first tick
        q, k, v = (x.transpose(1, 2) for x in self._qkv(h))  # (B, H|Hkv, L, hd), before RoPE
        cos, sin = (x.transpose(0, 1) for x in self.rotary(t))  # (1, L, hd/2)
        qr, kr = rope(q, cos, sin), rope(k, cos, sin)
        if k_ring is None:  # fresh: keys are this chunk's only
            if L <= W:
                y = self._attend(qr, kr, v, None, causal=True)
            else:
                d = t[:, None] - t[None, :]  # (L, L) query minus key position
                y = self._attend(qr, kr, v, ((d >= 0) & (d < W))[None, None])
            k_ring = torch.zeros(B, self.n_kv_head, W, self.head_dim, dtype=k.dtype, device=k.device)
            v_ring = torch.zeros_like(k_ring)
        else:
            slot = torch.arange(W, device=h.device)
            rel = -1 - torch.remainder(p0 - 1 - slot, W)  # (B, W) slot's tick relative to pos, in [-W, -1]
            rcos, rsin = (x.transpose(1, 2) for x in self.rotary(rel - slot))  # (B, 1, W, hd/2): slot angle -> rel
            kpos = torch.cat([rel, t.expand(B, L)], dim=1)  # (B, W + L)
            d = t[None, :, None] - kpos[:, None, :]  # (B, L, W + L)
            mask = (d >= 0) & (d < W) & (p0 + kpos >= 0)[:, None, :]  # ring slots never written are out
            k_all = torch.cat([rope(k_ring, rcos, rsin), kr], dim=2)
            y = self._attend(qr, k_all, torch.cat([v_ring, v], dim=2), mask[:, None])
        m = min(L, W)  # the last m ticks land in distinct slots, their keys rotated at the slot's angle
        slots = (p0 + t[-m:]) % W  # (B, m)
        scos, ssin = (x.transpose(1, 2) for x in self.rotary(slots))  # (B, 1, m, hd/2)
        idx = slots[:, None, :, None].expand(B, self.n_kv_head, m, self.head_dim)
        return y, k_ring.scatter(2, idx, rope(k[:, :, -m:], scos, ssin)), v_ring.scatter(2, idx, v[:, :, -m:])

    def step(self, h: Tensor, k_cache: Tensor, v_cache: Tensor, pos: Tensor,
             cache: str = "ring") -> tuple[Tensor, Tensor, Tensor]:
        """One tick at position pos (B, 1): h (B, d_model), cache k/v (B, Hkv, W|T, hd) -> (out (B, d_model),
        new k/v: ring W slots with slot pos mod W overwritten, or full T+1). Inputs are not modified."""
        q, k, v = self._qkv(h)  # (B, H, hd), (B, Hkv, hd) x 2, before RoPE
        if cache == "full":  # keys stored rotated at their absolute position
            cos, sin = self.rotary(pos[:, 0])  # (B, 1, hd/2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k_cache = torch.cat([k_cache, k[:, :, None]], dim=2)
            v_cache = torch.cat([v_cache, v[:, :, None]], dim=2)
            return self._attend(q[:, :, None], k_cache, v_cache, None)[:, 0], k_cache, v_cache
        W, groups = self.window, self.n_head // self.n_kv_head
        slot = torch.arange(W, device=h.device)  # (W,)
        phase = pos % W  # (B, 1): this tick's slot
        cos, sin = self.rotary.lookup(phase)  # (B, 1, hd/2)
        write = (slot == phase)[:, None, :, None]  # (B, 1, W, 1)
        k_cache = torch.where(write, rope(k, cos, sin)[:, :, None], k_cache)  # key at its slot's angle
        v_cache = torch.where(write, v[:, :, None], v_cache)
        cos, sin = (x[:, None] for x in self.rotary.lookup(torch.cat([phase, phase + W], dim=1)))  # (B, 1, 2, hd/2)
        q2 = rope(q[:, :, None], cos, sin)  # (B, H, 2, hd): the query at its own lap's angle, and the lap before's
        scores = q2 @ k_cache.repeat_interleave(groups, dim=1).transpose(-1, -2)  # (B, H, 2, W)
        scores = torch.where((slot <= phase)[:, None, :], scores[:, :, 0], scores[:, :, 1])  # (B, H, W)
        scores = scores.masked_fill(~(slot <= pos)[:, None, :], float("-inf"))  # slots not written yet
        att = (scores / math.sqrt(self.head_dim)).softmax(-1)  # (B, H, W)
        y = (att[:, :, None] @ v_cache.repeat_interleave(groups, dim=1))[:, :, 0]  # (B, H, hd)
        return self.o_proj(y.flatten(-2)), k_cache, v_cache


class SwiGLU(nn.Module):
    def __init__(self, cfg: AttentionFields):
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, h: Tensor) -> Tensor:
        gate, up = self.gate_up(h).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    """h + Attention(RMSNorm(h)), then h + SwiGLU(RMSNorm(h))."""

    def __init__(self, cfg: AttentionFields):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.mlp = SwiGLU(cfg)

    def forward(self, h, k_ring, v_ring, pos):
        out, k_ring, v_ring = self.attn(self.attn_norm(h), k_ring, v_ring, pos)
        h = h + out
        return h + self.mlp(self.mlp_norm(h)), k_ring, v_ring

    def step(self, h, k_cache, v_cache, pos, cache="ring"):
        out, k_cache, v_cache = self.attn.step(self.attn_norm(h), k_cache, v_cache, pos, cache)
        h = h + out
        return h + self.mlp(self.mlp_norm(h)), k_cache, v_cache


def init_transformer_block(block: TransformerBlock, n_layer: int) -> None:
    """nanoGPT's init: N(0, 0.02) weights, the residual projections (o_proj, down) by 1/sqrt(2 n_layer)."""
    for lin in (block.attn.qkv_proj, block.mlp.gate_up):
        nn.init.normal_(lin.weight, std=0.02)
    for lin in (block.attn.o_proj, block.mlp.down):
        nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * n_layer))


def kv_cache(batch: int, n_layer: int, cfg: AttentionFields, cache: str, dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    """Empty K, V (B, n_layer, Hkv, W or 0, hd) and POS (B, 1) int64 zeros."""
    if cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {cache!r}")
    length = cfg.window if cache == "ring" else 0
    k = torch.zeros(batch, n_layer, cfg.n_kv_head, length, cfg.head_dim, dtype=dtype, device=device)
    return k, torch.zeros_like(k), torch.zeros(batch, 1, dtype=torch.int64, device=device)


# ---------------------------------------------------------------------------------------------- model

class TransformerLOB(TickModel):
    state_names = ("K", "V", "POS")

    def __init__(self, config: TransformerLOBConfig):
        super().__init__(config, lambda: nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer)))
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.zeros_(self.feature_proj.bias)
        nn.init.zeros_(self.dir_head.bias)
        for block in self.layers:
            init_transformer_block(block, config.n_layer)

    def allocate_inference_cache(self, batch: int, dtype: torch.dtype = torch.float32,
                                 cache: str = "ring") -> tuple[Tensor, Tensor, Tensor]:
        """Fresh state: K, V (B, n_layer, n_kv_head, W (ring) or 0 (full), head_dim), POS (B, 1) int64 zeros."""
        return kv_cache(batch, self.config.n_layer, self.config, cache, dtype, self.embedding.weight.device)

    def forward(self, tokens: Tensor, features: Tensor, k: Tensor | None = None, v: Tensor | None = None,
                pos: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """tokens (B, L) int64, features (B, L, F), optional ring state from ``allocate_inference_cache`` or a
        previous call -> next_logits (B, L, V), dir_logits (B, L, H, 3), and the ring state after the L ticks."""
        self.check_inputs(tokens, features)
        h = self.embed(tokens, features)  # (B, L, d_model)
        k_out, v_out = [], []
        for i, layer in enumerate(self.layers):
            h, k_i, v_i = layer(h, None if k is None else k[:, i], None if v is None else v[:, i], pos)
            k_out.append(k_i)
            v_out.append(v_i)
        p0 = torch.zeros(tokens.shape[0], 1, dtype=torch.int64, device=h.device) if pos is None else pos
        return *self.heads(h, features), torch.stack(k_out, dim=1), torch.stack(v_out, dim=1), p0 + tokens.shape[1]

    def step(self, token: Tensor, features: Tensor, k: Tensor, v: Tensor, pos: Tensor,
             cache: str = "ring") -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One tick: token (B,), features (B, F), state (K, V, POS) of form ``cache`` -> next_logits (B, V),
        dir_logits (B, H, 3), new K, V, POS + 1. The input states are not modified."""
        h = self.embed(token, features)  # (B, d_model)
        k_out, v_out = [], []
        for i, layer in enumerate(self.layers):
            h, k_i, v_i = layer.step(h, k[:, i], v[:, i], pos, cache)
            k_out.append(k_i)
            v_out.append(v_i)
        return *self.heads(h, features), torch.stack(k_out, dim=1), torch.stack(v_out, dim=1), pos + 1
