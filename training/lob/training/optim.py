"""AdamW parameter groups: weight decay on weight matrices only (as mamba_ssm and nanoGPT do).

No decay on: every parameter with fewer than 2 dims (biases, norm scales, Mamba's ``D`` and the
``dt`` bias), Mamba's ``A_log`` (2-D, but decaying it pulls the state's decay rates towards 1),
embeddings (``nn.Embedding`` weights, and any parameter whose name contains ``emb``, such as a learned
position embedding), and a parameter that sets ``_no_weight_decay = True``. Decided by module type,
parameter name and dimension only, so it holds for any architecture; a tied weight (the next-event
head shares the token embedding) is one parameter and lands in one group.
"""
from __future__ import annotations

import torch
from torch import nn

_NO_DECAY_NAMES = ("A_log",)


def no_decay(name: str, param: torch.Tensor, module: nn.Module) -> bool:
    """Whether parameter ``name`` (its last component owned by ``module``) is exempt from weight decay."""
    leaf = name.rsplit(".", 1)[-1]
    return (param.ndim < 2 or leaf in _NO_DECAY_NAMES or isinstance(module, nn.Embedding) or "emb" in name.lower()
            or getattr(param, "_no_weight_decay", False))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}] with names."""
    seen: set[int] = set()
    groups = {True: ([], []), False: ([], [])}  # exempt -> (names, params)
    for mod_name, module in model.named_modules():
        for leaf, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            names, params = groups[no_decay(name, p, module)]
            names.append(name)
            params.append(p)
    return [{"params": groups[False][1], "names": groups[False][0], "weight_decay": weight_decay},
            {"params": groups[True][1], "names": groups[True][0], "weight_decay": 0.0}]
