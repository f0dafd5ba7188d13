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
from ..errors import ConfigError

SCHEDULES = ("cosine", "inverse_sqrt", "constant")


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: decayed matrices, and everything else. A model can name further parameters
    to keep out of decay in ``no_weight_decay``, by full name or by last component (e.g. ViT's
    ``pos_embed`` and ``cls_token``; Mamba's ``A_log`` and ``D`` in every layer).
    Frozen parameters (``requires_grad=False``) are left out.

    ``layer_decay < 1`` splits both groups by depth (see ``finetune``): each group carries an
    ``lr_scale`` = layer_decay^(L + 1 - depth) that the trainer multiplies into the learning rate."""
    names = tuple(getattr(model, "no_weight_decay", ()))
    no_decay_ids = {id(p) for n, p in model.named_parameters() if n in names or n.rsplit(".", 1)[-1] in names}
    for module in model.modules():
        if (
            isinstance(module, (nn.Embedding, nn.LayerNorm))
            or "Norm" in type(module).__name__
            or "Positional" in type(module).__name__
        ):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    if not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must be in (0, 1], got {layer_decay}")
    depths, top = {}, 0
    if layer_decay < 1.0:
        from .finetune import block_stack, layer_depths

        depths, top = layer_depths(model), block_stack(model)[1] + 1
    groups: dict[tuple[int, bool], list] = {}
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        decayed = not (id(p) in no_decay_ids or p.dim() < 2)
        groups.setdefault((depths.get(name, top), decayed), []).append(p)
    if layer_decay == 1.0:  # the plain two groups (decayed first), as in every run without decay
        return [
            {"params": groups.get((0, True), []), "weight_decay": weight_decay},
            {"params": groups.get((0, False), []), "weight_decay": 0.0},
        ]
    return [
        {"params": ps, "weight_decay": weight_decay if decayed else 0.0, "lr_scale": layer_decay ** (top - depth)}
        for (depth, decayed), ps in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1]))
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
    layer_decay: float = 1.0,
) -> torch.optim.AdamW:
    kwargs = {}
    if fused is not None:
        kwargs["fused"] = fused
    return torch.optim.AdamW(
        param_groups(model, weight_decay, layer_decay), lr=lr, betas=tuple(betas), eps=eps, **kwargs
    )


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
