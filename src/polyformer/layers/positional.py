"""Absolute positional encodings.

Sinusoidal (Vaswani et al. 2017, sec. 3.5):
    PE(pos, 2i) = sin(pos / 10000^(2i/d)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
Learned (GPT/BERT/ViT): a trainable table P[pos] of shape [max_len, d].
Both take ``offset`` so incremental decoding can ask for positions ``offset .. offset+T-1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SequenceTooLongError


def sinusoidal_table(n_positions: int, dim: int, dtype=torch.float32) -> torch.Tensor:
    pos = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    inv = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return table.to(dtype)


def _check_len(end: int, max_len: int) -> None:
    if end > max_len:
        raise SequenceTooLongError(
            f"sequence of {end} positions is longer than the model allows (max_seq_len={max_len}); "
            "truncate the input or build the model with a larger max_seq_len"
        )


class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("table", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        _check_len(offset + length, self.max_len)
        return self.table[offset : offset + length]


class LearnedPositionalEncoding(nn.Module):
    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.weight = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, length: int, offset: int = 0) -> torch.Tensor:
        _check_len(offset + length, self.max_len)
        return self.weight[offset : offset + length]


def make_positional(kind: str, max_len: int, dim: int) -> nn.Module | None:
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(max_len, dim)
    if kind == "learned":
        return LearnedPositionalEncoding(max_len, dim)
    if kind == "none":
        return None
    raise ValueError(f"unknown positional encoding {kind!r}")
