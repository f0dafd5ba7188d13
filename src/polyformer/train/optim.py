"""Optimiser and learning-rate schedules.

AdamW (Loshchilov & Hutter 2019) with decoupled weight decay applied only to matrices of linear
layers; norms, biases and embeddings (token and position) are not decayed.

Schedules, for step s (0-based) with warmup W and total S:
  cosine:       lr = base * (s+1)/W for s < W; then min + (base - min) * (1 + cos(pi * p)) / 2,
                p = (s - W) / (S - W)   (nanoGPT / GPT-3)
  inverse_sqrt: lr = base * d_model^-0.5 * min((s+1)^-0.5, (s+1) * W^-1.5)   (Vaswani et al., eq. 3;
                base = 1 gives the paper's rate)
  constant:     lr = base after linear warmup
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import check_choice

SCHEDULES = ("cosine", "inverse_sqrt", "constant")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices, and everything else. A model can name further parameters
    to keep out of decay in ``no_weight_decay`` (e.g. ViT's position table and class token)."""
    no_decay_ids = {id(p) for n, p in model.named_parameters() if n in getattr(model, "no_weight_decay", ())}
    for module in model.modules():
        if (
            isinstance(module, (nn.Embedding, nn.LayerNorm))
            or "Norm" in type(module).__name__
            or "Positional" in type(module).__name__
        ):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in no_decay_ids or p.dim() < 2:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    kwargs = {}
    if fused is not None:
        kwargs["fused"] = fused
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps, **kwargs)


def lr_at(
    step: int, schedule: str, base_lr: float, warmup: int, total: int, min_lr: float = 0.0, d_model: int | None = None
) -> float:
    check_choice("schedule", schedule, SCHEDULES)
    s = step + 1
    if schedule == "inverse_sqrt":
        if d_model is None:
            raise ValueError("the inverse_sqrt schedule needs d_model")
        w = max(warmup, 1)
        return base_lr * d_model**-0.5 * min(s**-0.5, s * w**-1.5)
    if step < warmup:
        return base_lr * s / warmup
    if schedule == "constant":
        return base_lr
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
