"""Activator (Abdullah & Aydin 2024, "GLU Activation Function as the Core Component of a Vision
Transformer", arXiv 2405.15953), as the authors' code defines it.

Patches (a P x P convolution with stride P) become tokens; each block is
    x = x + AGU(LN(x)),     AGU(x) = W3( LN_h(act(W1 x)) * LN_h(W2 x) )     (activator gating unit)
    x = x + FFN(LN(x)),     FFN(x) = W5 Dropout(GELU(W4 x)), then Dropout
with act = GELU (GEGLU, the authors' choice), SiLU (SwiGLU) or ReLU (ReGLU). As in the authors' code,
one LayerNorm(d_model) serves both sublayers of a block and one LayerNorm(hidden) both AGU branches.
``use_ffn=False`` is the reduced GLU-only variant. Classification: mean over tokens, then a linear head.

No layer of this model mixes information across tokens: every projection acts on the channel axis of
each patch separately. The final mean pooling is the only operation that combines patches. There is
no position embedding and no class token, so the model runs at any image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BaseConfig, check, check_choice, check_positive_int, check_prob
from ..modeling import ModelOutput, PolyModel
from ..registry import register_family, register_model
from .transformer import cross_entropy
from .vit import check_pixel_values

GATES = {"geglu": F.gelu, "swiglu": F.silu, "reglu": F.relu}


@dataclass
class ActivatorConfig(BaseConfig):
    family = "activator"

    image_size: int = 32  # nominal size (the model itself accepts any size)
    patch_size: int = 4
    num_channels: int = 3
    d_model: int = 256
    gate_dim: int = 512  # hidden width of the gating unit
    d_ff: int = 512  # hidden width of the FFN
    n_layers: int = 4
    num_classes: int = 10
    glu: str = "geglu"
    use_ffn: bool = True  # False = the reduced GLU-only variant
    dropout: float = 0.5
    norm_eps: float = 1e-5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        for f in ("image_size", "patch_size", "num_channels", "d_model", "gate_dim", "d_ff", "n_layers", "num_classes"):
            check_positive_int(f, getattr(self, f))
        check(
            self.patch_size <= self.image_size, "patch_size", self.patch_size, f"at most image_size={self.image_size}"
        )
        check_choice("glu", self.glu, tuple(GATES))
        check_prob("dropout", self.dropout)
        check_prob("label_smoothing", self.label_smoothing)
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")

    @property
    def max_seq_len(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def n_heads(self) -> int:  # no attention; one "head" keeps shared tooling (info) uniform
        return 1


class ActivatorGatingUnit(nn.Module):
    def __init__(self, cfg: ActivatorConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.gate_dim)
        self.w2 = nn.Linear(cfg.d_model, cfg.gate_dim)
        self.norm = nn.LayerNorm(cfg.gate_dim, eps=cfg.norm_eps)  # shared by both branches
        self.w3 = nn.Linear(cfg.gate_dim, cfg.d_model)
        self.act = GATES[cfg.glu]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.norm(self.act(self.w1(x))) * self.norm(self.w2(x)))


class ActivatorBlock(nn.Module):
    def __init__(self, cfg: ActivatorConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)  # shared by both sublayers
        self.gate = ActivatorGatingUnit(cfg)
        self.ffn = (
            nn.Sequential(
                nn.Linear(cfg.d_model, cfg.d_ff),
                nn.GELU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(cfg.d_ff, cfg.d_model),
                nn.Dropout(cfg.dropout),
            )
            if cfg.use_ffn
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gate(self.norm(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm(x))
        return x


class Activator(PolyModel):
    """``model(pixel_values, labels=None)``, pixel_values [B, C, H, W] of any size >= one patch."""

    def __init__(self, config: ActivatorConfig):
        super().__init__()
        self.config = cfg = config
        self.patch_embed = nn.Conv2d(cfg.num_channels, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.blocks = nn.ModuleList(ActivatorBlock(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)

    def forward(self, pixel_values, labels=None) -> ModelOutput:
        cfg = self.config
        check_pixel_values(pixel_values, cfg.num_channels, cfg.patch_size, None)
        x = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        logits = self.head(x.mean(dim=1))
        loss = cross_entropy(logits, labels, cfg.label_smoothing) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, hidden_states=x)


register_family("activator", ActivatorConfig, Activator)
register_model("activator-cifar", "activator", "authors' CIFAR-10 setting: patch 4, width 256, 4 blocks")
register_model("activator-glu-only-cifar", "activator", "reduced GLU-only variant (no FFN sublayer)", use_ffn=False)
register_model(
    "activator-mnist",
    "activator",
    "Activator for 28x28 greyscale images, patch 4",
    image_size=28,
    num_channels=1,
    d_model=128,
    gate_dim=256,
    d_ff=256,
    dropout=0.1,
)
