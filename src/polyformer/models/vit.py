"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words", arXiv 2010.11929).

An image x in R^{H x W x C} is cut into N = HW / P^2 patches, each linearly projected (a P x P
convolution with stride P), a learnable class token is prepended and learned 1-D positions added:
    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
    z'_l = MSA(LN(z_{l-1})) + z_{l-1},      z_l = MLP(LN(z'_l)) + z'_l      (pre-LN, GELU MLP)
    y = Head(LN(z_L)[0])        (pooling='cls';  pooling='mean' averages the patch tokens instead)
At another resolution, ``interpolate_pos_encoding=True`` resizes the patch-position grid with bicubic
interpolation (from the square training grid to (H/P, W/P), non-square allowed), as Hugging Face does.
The blocks are the same pre-LN encoder layers as the Transformer family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BaseConfig, check, check_choice, check_positive_int, check_prob
from ..errors import DataError
from ..layers.mlp import ACTIVATIONS
from ..modeling import ModelOutput, PolyModel
from ..registry import register_family, register_model
from .transformer import EncoderLayer, cross_entropy


def check_pixel_values(x, num_channels: int, patch_size: int, image_size: int | None) -> None:
    """Raise a one-line ``DataError`` unless ``x`` is a float [B, C, H, W] batch the model can take
    (``image_size=None``: any size of at least one patch)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"pixel_values must be a [batch, channels, height, width] tensor, got {shape}")
    if not x.is_floating_point():
        raise DataError(f"pixel_values must be floating point (normalised images), got {x.dtype}")
    if x.shape[1] != num_channels:
        raise DataError(f"this model takes {num_channels}-channel images, got {x.shape[1]} channels")
    h, w = x.shape[-2:]
    if image_size is not None and (h, w) != (image_size, image_size):
        raise DataError(
            f"input image size ({h}x{w}) doesn't match the model ({image_size}x{image_size}); "
            "resize the images or pass interpolate_pos_encoding=True"
        )
    if h < patch_size or w < patch_size:
        raise DataError(f"images of {h}x{w} are smaller than one {patch_size}x{patch_size} patch")


def resize_positions(table: torch.Tensor, grid: int, size: tuple[int, int]) -> torch.Tensor:
    """[1, 1 + grid^2, d] (class position first) -> [1, 1 + h*w, d], bicubic on the patch grid."""
    d = table.shape[-1]
    cls_pos, patch_pos = table[:, :1], table[:, 1:]
    patches = patch_pos.reshape(1, grid, grid, d).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=size, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, patches.permute(0, 2, 3, 1).reshape(1, size[0] * size[1], d)], dim=1)


@dataclass
class ViTConfig(BaseConfig):
    family = "vit"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    d_ff: int = 3072
    num_classes: int = 1000
    activation: str = "gelu"
    dropout: float = 0.0  # hidden dropout (HF hidden_dropout_prob)
    attn_dropout: float = 0.0  # on attention weights (HF attention_probs_dropout_prob)
    norm_eps: float = 1e-12  # HF default; timm/JAX use 1e-6
    bias: bool = True  # qkv and all other linear biases (HF qkv_bias)
    pooling: str = "cls"
    label_smoothing: float = 0.0

    # fixed by the architecture; named like TransformerConfig so the shared blocks read them
    norm: str = "layernorm"
    norm_first: bool = True
    n_kv_heads: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("image_size", self.image_size)
        check_positive_int("patch_size", self.patch_size)
        check(
            self.patch_size <= self.image_size, "patch_size", self.patch_size, f"at most image_size={self.image_size}"
        )
        check_positive_int("num_channels", self.num_channels)
        check_positive_int("d_model", self.d_model)
        check_positive_int("n_layers", self.n_layers)
        check_positive_int("n_heads", self.n_heads)
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        check_positive_int("d_ff", self.d_ff)
        check_positive_int("num_classes", self.num_classes)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_prob("dropout", self.dropout)
        check_prob("attn_dropout", self.attn_dropout)
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")
        check_choice("pooling", self.pooling, ("cls", "mean"))
        check_prob("label_smoothing", self.label_smoothing)
        check_choice("norm", self.norm, ("layernorm", "rmsnorm"))

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2

    @property
    def max_seq_len(self) -> int:
        return self.num_patches + 1

    @property
    def ffn_dropout(self) -> float:  # HF applies hidden dropout after fc2 only
        return 0.0


class ViT(PolyModel):
    """``model(pixel_values, labels=None, interpolate_pos_encoding=False)``, pixel_values [B, C, H, W]."""

    no_weight_decay = ("pos_embed", "cls_token")  # embeddings: kept out of AdamW's weight decay

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = cfg = config
        self.patch_embed = nn.Conv2d(cfg.num_channels, cfg.d_model, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, cfg.d_model))
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def interpolated_positions(self, height: int, width: int) -> torch.Tensor:
        """Position table for an input of ``height`` x ``width`` pixels (bicubic on the patch grid)."""
        cfg = self.config
        gh, gw = height // cfg.patch_size, width // cfg.patch_size
        if gh == gw == cfg.grid:
            return self.pos_embed
        return resize_positions(self.pos_embed, cfg.grid, (gh, gw))

    def adapt_checkpoint_state(self, state: dict) -> list[str]:
        """Fine-tuning at another resolution: resize a checkpoint's position table (in ``state``) to
        this model's patch grid, as DeiT and timm do. Returns what was changed."""
        old = state.get("pos_embed")
        if old is None or old.shape == self.pos_embed.shape or old.shape[-1] != self.config.d_model:
            return []
        side = int(round((old.shape[1] - 1) ** 0.5))
        if side * side != old.shape[1] - 1:
            return []  # not a square grid: let the shape check report it
        g = self.config.grid
        state["pos_embed"] = resize_positions(old, side, (g, g))
        return [f"init_from: position table resized from a {side}x{side} to a {g}x{g} patch grid (bicubic)"]

    def features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """Final-LN token states [B, 1 + N, d] (class token first)."""
        cfg = self.config
        check_pixel_values(
            pixel_values, cfg.num_channels, cfg.patch_size, None if interpolate_pos_encoding else cfg.image_size
        )
        h, w = pixel_values.shape[-2:]
        x = self.patch_embed(pixel_values.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        pos = self.interpolated_positions(h, w) if interpolate_pos_encoding else self.pos_embed
        x = self.dropout(x + pos)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, pixel_values, labels=None, interpolate_pos_encoding: bool = False) -> ModelOutput:
        h = self.features(pixel_values, interpolate_pos_encoding)
        pooled = h[:, 0] if self.config.pooling == "cls" else h[:, 1:].mean(1)
        logits = self.head(pooled)
        loss = cross_entropy(logits, labels, self.config.label_smoothing) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, hidden_states=h)


register_family("vit", ViTConfig, ViT)

# Published sizes (Dosovitskiy et al. 2020; DeiT for tiny/small), 224x224 with 16x16 patches.
for _name, _d, _L, _h in (("tiny", 192, 12, 3), ("small", 384, 12, 6), ("base", 768, 12, 12), ("large", 1024, 24, 16)):
    register_model(
        f"vit-{_name}-patch16-224",
        "vit",
        f"ViT-{_name[0].upper()}/16 at 224x224",
        d_model=_d,
        n_layers=_L,
        n_heads=_h,
        d_ff=4 * _d,
    )
# Small-data presets: 4x4 patches on 28x28 greyscale (MNIST) and 32x32 colour (CIFAR) images.
register_model(
    "vit-mnist-patch4",
    "vit",
    "small ViT for 28x28 greyscale images, patch 4",
    image_size=28,
    patch_size=4,
    num_channels=1,
    d_model=128,
    n_layers=6,
    n_heads=4,
    d_ff=256,
    num_classes=10,
    norm_eps=1e-6,
)
register_model(
    "vit-mnist-tiny-patch4",
    "vit",
    "0.2M-parameter ViT for 28x28 greyscale images, patch 4, width 64",
    image_size=28,
    patch_size=4,
    num_channels=1,
    d_model=64,
    n_layers=6,
    n_heads=4,
    d_ff=128,
    num_classes=10,
    norm_eps=1e-6,
)
register_model(
    "vit-cifar-patch4",
    "vit",
    "small ViT for 32x32 colour images, patch 4",
    image_size=32,
    patch_size=4,
    num_channels=3,
    d_model=192,
    n_layers=6,
    n_heads=3,
    d_ff=384,
    num_classes=10,
    norm_eps=1e-6,
)
