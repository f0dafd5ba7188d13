"""Selective copying (Gu & Dao 2023, Mamba, section 4.1.1 and Table 1).

A sequence of ``length`` positions holds ``n_data`` data tokens at random positions, in order, and
the blank token everywhere else; then a separator, then the data tokens again. A model reads the
whole sequence and must reproduce the data tokens after the separator: it has to remember *which*
inputs matter (content-dependent selection), which a time-invariant convolution or SSM cannot do.

Tokens: 0 = blank, 1 = separator, 2 .. vocab_size-1 = data. Example (length 8, 3 data tokens):
    [0 7 0 0 3 0 9 0 | 1 | 7 3 9]
Labels are -100 (ignored) except on the answer, so with labels shifted inside the model the loss
is on predicting the n_data tokens from the separator onwards (teacher forcing, as in the paper).
"""

from __future__ import annotations

import torch

BLANK, SEP = 0, 1


def selective_copy_batch(
    batch_size: int, length: int = 512, n_data: int = 16, vocab_size: int = 16, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels), both [batch, length + 1 + n_data]."""
    if n_data > length:
        raise ValueError(f"n_data={n_data} must be at most length={length}")
    if vocab_size < 3:
        raise ValueError("vocab_size must leave room for the blank, the separator and data tokens")
    data = torch.randint(2, vocab_size, (batch_size, n_data), generator=generator)
    # n_data distinct positions per row, in increasing order
    pos = torch.rand(batch_size, length, generator=generator).argsort(dim=1)[:, :n_data].sort(dim=1).values
    context = torch.full((batch_size, length), BLANK, dtype=torch.long).scatter_(1, pos, data)
    sep = torch.full((batch_size, 1), SEP, dtype=torch.long)
    ids = torch.cat([context, sep, data], dim=1)
    labels = torch.full_like(ids, -100)
    labels[:, length + 1 :] = data
    return ids, labels


def answer_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(correct, total) answer tokens; logits [B, T, V] from inputs whose labels are shifted inside."""
    pred = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    keep = target != -100
    return int((pred[keep] == target[keep]).sum()), int(keep.sum())
