"""Hyena models (Poli et al. 2023, arXiv 2302.10866): attention-free sequence models whose token
mixer is the Hyena operator (``layers/hyena.py``: gated implicit long convolutions by FFT).

Blocks are GPT-2-style pre-LN, as in safari's ``lm_simple``:
    h = x + Hyena(LN(x)),      out = h + MLP(LN(h))       (GELU MLP)
No position embedding: the implicit filters are functions of the lag, so they carry position.

* :class:`HyenaLM` - decoder-only LM with tied embeddings; ``generate`` streams: the prompt is run
  by FFT once, then each new token costs O(L d) per layer against cached inputs.
* :class:`HyenaClassifier` - sequence classifier for audio and time series: the input is token ids,
  or real values [B, T] / [B, T, C] cut into non-overlapping frames of ``patch_size`` samples and
  projected (a strided convolution), then Hyena blocks, a final LayerNorm and a linear head on the
  mean over valid positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import BaseConfig, check, check_choice, check_positive_int, check_prob
from ..errors import DataError, SequenceTooLongError
from ..layers.hyena import HyenaOperator, HyenaState
from ..layers.mlp import MLP
from ..modeling import ModelOutput, PolyModel
from ..registry import register_family, register_model
from .transformer import LMGenerateMixin, _check_ids, cross_entropy, lm_loss


@dataclass
class HyenaConfig(BaseConfig):
    family = "hyena"

    arch: str = "lm"  # or 'classifier'
    vocab_size: int = 256  # token inputs; for real-valued inputs set input_dim
    input_dim: int = 0  # classifier on real values: channels per time step (1 for a waveform); 0 = ids
    patch_size: int = 1  # classifier on real values: samples per frame
    num_classes: int = 10
    d_model: int = 64
    n_layers: int = 2
    d_ff: int = 256
    max_seq_len: int = 1024  # l_max of the filters (longer inputs still work unless trainable_pos)
    order: int = 2
    filter_order: int = 64
    emb_dim: int = 5
    short_filter_order: int = 3
    filter_w: float = 10.0  # initial sine frequency of the filter network
    num_inner_mlps: int = 2
    # Initialisation. 'normal': every linear layer, the filter networks' included, N(0, 0.02) with zero
    # biases and the residual output projections (out_proj, fc2) scaled by 1/sqrt(2 n_layers), as
    # safari's LMs do (filters start small, close to the skip term D). 'torch': the filter networks
    # keep torch's default initialisation and nothing is rescaled.
    init: str = "normal"
    trainable_pos: bool = False
    shared_sin: bool = False
    pos_freqs: str = "linear"
    dropout: float = 0.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    label_smoothing: float = 0.0
    pad_token_id: int = 0
    bos_token_id: int = 0
    eos_token_id: int = 0

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("lm", "classifier"))
        for f in ("vocab_size", "d_model", "n_layers", "d_ff", "max_seq_len", "filter_order", "num_classes"):
            check_positive_int(f, getattr(self, f))
        check_positive_int("patch_size", self.patch_size)
        check_positive_int("order", self.order, minimum=2)
        check_positive_int("short_filter_order", self.short_filter_order)
        check(self.emb_dim >= 3 and self.emb_dim % 2 == 1, "emb_dim", self.emb_dim, "an odd number >= 3")
        check(self.input_dim >= 0, "input_dim", self.input_dim, ">= 0 (0 = token ids)")
        check(self.arch == "classifier" or self.input_dim == 0, "input_dim", self.input_dim, "0 for the LM")
        check_choice("pos_freqs", self.pos_freqs, ("linear", "safari"))
        check_choice("init", self.init, ("normal", "torch"))
        check_prob("dropout", self.dropout)
        check_prob("label_smoothing", self.label_smoothing)
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")


class HyenaBlock(nn.Module):
    def __init__(self, cfg: HyenaConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = HyenaOperator(
            cfg.d_model,
            cfg.max_seq_len,
            order=cfg.order,
            filter_order=cfg.filter_order,
            emb_dim=cfg.emb_dim,
            short_filter_order=cfg.short_filter_order,
            w=cfg.filter_w,
            num_inner_mlps=cfg.num_inner_mlps,
            dropout=cfg.dropout,
            trainable_pos=cfg.trainable_pos,
            pos_freqs=cfg.pos_freqs,
            shared_sin=cfg.shared_sin,
        )
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.d_model, cfg.d_ff, "gelu", bias=True, dropout=cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, state: HyenaState | None = None):
        x = x + self.dropout(self.mixer(self.norm1(x), cache=state, mask=mask))
        return x + self.dropout(self.mlp(self.norm2(x)))


def _init(model: nn.Module, cfg: HyenaConfig) -> None:
    """GPT-2 style: N(0, 0.02) for linear and embedding weights, zero biases; see ``HyenaConfig.init``
    for what happens to the filter networks and the residual projections."""
    for name, m in model.named_modules():
        if cfg.init == "torch" and (".filter_fn" in name or name.endswith("filter_fn")):
            continue
        if isinstance(m, (nn.Linear, nn.Embedding)):
            std = 0.02
            if cfg.init == "normal" and name.endswith(("mixer.out_proj", "mlp.fc2")):
                std /= math.sqrt(2 * cfg.n_layers)
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class HyenaCache:
    def __init__(self, n_layers: int):
        self.layers = [HyenaState() for _ in range(n_layers)]
        self.length = 0

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.layers)


class HyenaLM(LMGenerateMixin, PolyModel):
    """Causal LM: ``model(input_ids, labels=None, attention_mask=None, cache=None)``; labels shifted inside."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(HyenaBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _init(self, cfg)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def new_cache(self) -> HyenaCache:
        return HyenaCache(self.config.n_layers)

    def forward(self, input_ids, labels=None, attention_mask=None, cache: HyenaCache | None = None, shift_labels=True):
        cfg = self.config
        _check_ids(input_ids, "input_ids", None, cfg.vocab_size)
        if cfg.trainable_pos and (cache.length if cache else 0) + input_ids.shape[1] > cfg.max_seq_len:
            raise SequenceTooLongError(
                f"{input_ids.shape[1]} tokens exceed max_seq_len={cfg.max_seq_len} of a trained positional table"
            )
        if cache is not None and cache.length and attention_mask is not None and not bool(attention_mask.all()):
            raise DataError("padding is only supported in the first call on a cache (left-pad the prompt)")
        mask = None if attention_mask is None else attention_mask[:, None, -input_ids.shape[1] :].to(torch.float32)
        x = self.drop(self.embed(input_ids))
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else cache.layers[i])
        if cache is not None:
            cache.length += input_ids.shape[1]
        logits = self.lm_head(self.norm(x))
        loss = lm_loss(logits, labels, attention_mask, shift_labels, cfg.label_smoothing)
        return ModelOutput(logits=logits, loss=loss, cache=cache)


class HyenaClassifier(PolyModel):
    """``model(inputs, labels=None, attention_mask=None)``: inputs are token ids [B, L], or real values
    [B, T] / [B, T, input_dim] (T a multiple of patch_size; ``attention_mask`` [B, T] marks real samples)."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        self.config = cfg = config
        if cfg.input_dim:
            self.embed = nn.Linear(cfg.input_dim * cfg.patch_size, cfg.d_model)
        else:
            self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(HyenaBlock(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        _init(self, cfg)

    def _embed(self, inputs, attention_mask):
        cfg = self.config
        if not cfg.input_dim:
            _check_ids(inputs, "inputs", None, cfg.vocab_size)
            keep = (inputs != cfg.pad_token_id) if attention_mask is None else attention_mask.bool()
            return self.embed(inputs), keep
        if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
            raise DataError("this classifier takes real-valued inputs (a float tensor [batch, time(, channels)])")
        x = inputs.unsqueeze(-1) if inputs.dim() == 2 else inputs
        if x.dim() != 3 or x.shape[-1] != cfg.input_dim:
            raise DataError(
                f"inputs must be [batch, time] or [batch, time, {cfg.input_dim}], got {tuple(inputs.shape)}"
            )
        b, t, c = x.shape
        p = cfg.patch_size
        if t % p:
            raise DataError(f"input length {t} is not a multiple of patch_size={p}; pad or trim it")
        keep = torch.ones(b, t, dtype=torch.bool, device=x.device) if attention_mask is None else attention_mask.bool()
        frames = x.reshape(b, t // p, p * c)
        keep = keep.view(b, t // p, p).any(-1)
        return self.embed(frames.to(self.embed.weight.dtype)), keep

    def forward(self, inputs, labels=None, attention_mask=None) -> ModelOutput:
        cfg = self.config
        x, keep = self._embed(inputs, attention_mask)
        if cfg.trainable_pos and x.shape[1] > cfg.max_seq_len:
            raise SequenceTooLongError(f"{x.shape[1]} steps exceed max_seq_len={cfg.max_seq_len}")
        mask = keep[:, None, :].to(x.dtype)
        x = self.drop(x) * keep[..., None]
        for block in self.blocks:
            x = block(x, mask)
        h = self.norm(x)
        w = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        logits = self.head(pooled)
        loss = cross_entropy(logits, labels, cfg.label_smoothing) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, hidden_states=h)


def build(config: HyenaConfig) -> PolyModel:
    return HyenaLM(config) if config.arch == "lm" else HyenaClassifier(config)


register_family("hyena", HyenaConfig, build)
register_model("hyena-tiny", "hyena", "2 layers, width 64 (the paper's associative-recall model)")
register_model(
    "hyena-small", "hyena", "4 layers, width 256, l_max 4096", d_model=256, n_layers=4, d_ff=1024, max_seq_len=4096
)
register_model(
    "hyena-153m",
    "hyena",
    "the paper's Pile model shape: 18 layers, width 864, GPT-2 vocabulary, 2048 tokens",
    vocab_size=50257,
    d_model=864,
    n_layers=18,
    d_ff=1728,
    max_seq_len=2048,
    emb_dim=33,
    filter_w=14.0,
)
register_model(
    "hyena-audio",
    "hyena",
    "classifier on raw 8 kHz audio: frames of 8 samples, 4 layers of width 64",
    arch="classifier",
    input_dim=1,
    patch_size=8,
    d_model=64,
    n_layers=4,
    d_ff=256,
    max_seq_len=2048,
    num_classes=10,
    init="torch",  # as trained for docs/benchmarks.md (spoken digits)
)
