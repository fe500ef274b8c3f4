"""HybridLOB: Jamba-style interleave of Mamba-1 blocks and attention blocks, with the shared heads.

Layer i (0-based) is a `lob.models.transformer.TransformerBlock` (sliding-window GQA attention + SwiGLU)
when (i + 1) % attn_every == 0, else a `lob.models.mamba.Block`; e.g. 6 layers, attn_every 3:
M M A M M A. Streaming state: the Mamba layers' CONV (B, n_mamba, D, d_conv-1) and SSM (B, n_mamba, D, N),
the attention layers' ring K, V (B, n_attn, n_kv_head, W, head_dim) and POS (B, 1) int64; forward and
step carry them as `MambaLOB` and `TransformerLOB` do (``cache="full"`` grows K/V instead of the ring).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lob.models.base import HeadConfig, TickConfig, TickModel
from lob.models.mamba import Block, MambaFields
from lob.models.transformer import AttentionFields, TransformerBlock, init_transformer_block, kv_cache

Tensor = torch.Tensor


@dataclass
class Interleave(TickConfig):
    """Which layers are attention: every ``attn_every``-th; at least one of each kind."""

    attn_every: int = 2  # k: every k-th layer is attention

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("attn_every")
        if not self.attention_layers or len(self.attention_layers) == self.n_layer:
            raise ValueError(f"{type(self).__name__}: n_layer={self.n_layer}, attn_every={self.attn_every} leaves "
                             f"no {'attention' if not self.attention_layers else 'Mamba'} layer")

    @property
    def attention_layers(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n_layer) if (i + 1) % self.attn_every == 0)


@dataclass
class HybridLOBConfig(HeadConfig, AttentionFields, MambaFields, Interleave):
    pass


# Same d_model x layers as the other archs' presets; attn_every = n_layer at tiny/small (one attention layer,
# last), 3 at base (M M A M M A).
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=32, n_layer=2, attn_every=2, n_head=4, n_kv_head=2),
    "small": dict(d_model=96, n_layer=3, attn_every=3, n_head=6, n_kv_head=2),
    "base": dict(d_model=192, n_layer=6, attn_every=6, n_head=6, n_kv_head=2),
}


class HybridLOB(TickModel):
    state_names = ("CONV", "SSM", "K", "V", "POS")

    def __init__(self, config: HybridLOBConfig):
        attn = set(config.attention_layers)
        super().__init__(config, lambda: nn.ModuleList(
            TransformerBlock(config) if i in attn else Block(config) for i in range(config.n_layer)))
        nn.init.normal_(self.embedding.weight, std=0.02)
        for name, module in self.named_modules():  # as MambaLOB: zero biases but dt_proj's
            if isinstance(module, nn.Linear) and module.bias is not None and not name.endswith("dt_proj"):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for layer in self.layers:
                if isinstance(layer, TransformerBlock):
                    init_transformer_block(layer, config.n_layer)
                else:
                    layer.mixer.out_proj.weight /= math.sqrt(config.n_layer)

    def allocate_inference_cache(self, batch: int, dtype: torch.dtype = torch.float32,
                                 cache: str = "ring") -> tuple[Tensor, ...]:
        """Fresh CONV (B, n_mamba, D, d_conv-1), SSM (B, n_mamba, D, N), K, V (B, n_attn, Hkv, W|0, hd), POS (B, 1)."""
        cfg, device = self.config, self.embedding.weight.device
        n_attn = len(cfg.attention_layers)
        n_mamba = cfg.n_layer - n_attn
        conv = torch.zeros(batch, n_mamba, cfg.d_inner, cfg.d_conv - 1, dtype=dtype, device=device)
        ssm = torch.zeros(batch, n_mamba, cfg.d_inner, cfg.d_state, dtype=dtype, device=device)
        return conv, ssm, *kv_cache(batch, n_attn, cfg, cache, dtype, device)

    def _run(self, h: Tensor, conv, ssm, k, v, pos, step: bool, cache: str = "ring"):
        outs = ([], [], [], [])  # conv, ssm, k, v per layer of its kind
        m = a = 0
        for layer in self.layers:
            if isinstance(layer, TransformerBlock):
                k_a, v_a = (None, None) if k is None else (k[:, a], v[:, a])
                h, k_a, v_a = layer.step(h, k_a, v_a, pos, cache) if step else layer(h, k_a, v_a, pos)
                outs[2].append(k_a)
                outs[3].append(v_a)
                a += 1
            else:
                h, c, s = (layer.step if step else layer)(h, conv[:, m], ssm[:, m])
                outs[0].append(c)
                outs[1].append(s)
                m += 1
        return h, *(torch.stack(o, dim=1) for o in outs)

    def forward(self, tokens: Tensor, features: Tensor, conv: Tensor | None = None, ssm: Tensor | None = None,
                k: Tensor | None = None, v: Tensor | None = None, pos: Tensor | None = None) -> tuple[Tensor, ...]:
        """tokens (B, L) int64, features (B, L, F), optional state (all five or none) -> next_logits (B, L, V),
        dir_logits (B, L, H, 3), CONV, SSM, K, V, POS after the L ticks."""
        self.check_inputs(tokens, features)
        B = tokens.shape[0]
        if conv is None:
            conv, ssm, _, _, _ = self.allocate_inference_cache(B, features.dtype, cache="full")
        h, conv, ssm, k, v = self._run(self.embed(tokens, features), conv, ssm, k, v, pos, step=False)
        p0 = torch.zeros(B, 1, dtype=torch.int64, device=h.device) if pos is None else pos
        return *self.heads(h, features), conv, ssm, k, v, p0 + tokens.shape[1]

    def step(self, token: Tensor, features: Tensor, conv: Tensor, ssm: Tensor, k: Tensor, v: Tensor, pos: Tensor,
             cache: str = "ring") -> tuple[Tensor, ...]:
        """One tick: token (B,), features (B, F), the five states -> next_logits (B, V), dir_logits (B, H, 3),
        new CONV, SSM, K, V, POS + 1. The input states are not modified."""
        h, conv, ssm, k, v = self._run(self.embed(token, features), conv, ssm, k, v, pos, step=True, cache=cache)
        return *self.heads(h, features), conv, ssm, k, v, pos + 1
