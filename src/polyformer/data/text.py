"""Text data for language modelling and translation."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import torch

from ..errors import DataError


def read_text(path: str | os.PathLike) -> str:
    """Read a UTF-8 text file (``.gz`` transparently) with a clear error if it is missing or binary."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as UTF-8 text: {e}") from None


def read_lines(path: str | os.PathLike) -> list[str]:
    return read_text(path).rstrip("\n").split("\n")


class TokenStream:
    """A long 1-D token sequence split into train/val (nanoGPT's first-90% / last-10%)."""

    def __init__(self, ids: torch.Tensor, train_fraction: float = 0.9):
        n = int(len(ids) * train_fraction)
        self.train, self.val = ids[:n], ids[n:]

    def random_batch(self, split: str, batch_size: int, block: int, generator: torch.Generator):
        data = self.train if split == "train" else self.val
        if len(data) <= block + 1:
            raise DataError(f"{split} split has {len(data)} tokens, fewer than the context {block} + 1")
        ix = torch.randint(len(data) - block - 1, (batch_size,), generator=generator)
        offsets = torch.arange(block + 1)
        w = data[ix[:, None] + offsets]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def full_windows(self, split: str, block: int, batch_size: int):
        """Every token of the split once as a target: non-overlapping windows of ``block``."""
        data = self.val if split == "val" else self.train
        n = (len(data) - 1) // block
        x = data[: n * block].view(n, block)
        y = data[1 : n * block + 1].view(n, block)
        for i in range(0, n, batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        rest = len(data) - 1 - n * block
        if rest > 0:
            yield data[n * block : n * block + rest][None], data[n * block + 1 :][None]


def pad_batch(seqs: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


class ParallelData:
    """Source/target token-id pairs with padded, length-bucketed batches.

    A batch holds ``src`` [B, S], ``tgt`` = BOS + y [B, T] and ``labels`` = y + EOS [B, T]."""

    def __init__(self, pairs: list[tuple[list[int], list[int]]], bos: int, eos: int, pad: int):
        if not pairs:
            raise DataError("no sentence pairs")
        self.pairs, self.bos, self.eos, self.pad = pairs, bos, eos, pad

    def __len__(self) -> int:
        return len(self.pairs)

    def collate(self, idx) -> dict[str, torch.Tensor]:
        src = [self.pairs[i][0] for i in idx]
        tgt = [[self.bos] + self.pairs[i][1] for i in idx]
        lab = [self.pairs[i][1] + [self.eos] for i in idx]
        return {"src": pad_batch(src, self.pad), "tgt": pad_batch(tgt, self.pad), "labels": pad_batch(lab, self.pad)}

    def epoch_batches(self, max_tokens: int, generator: torch.Generator, shuffle: bool = True):
        """Batches of about ``max_tokens`` target+source tokens, similar lengths together."""
        order = (
            torch.randperm(len(self.pairs), generator=generator).tolist() if shuffle else list(range(len(self.pairs)))
        )
        # sort within large chunks by length so padding stays small, then shuffle the batches
        chunk = 100 * 64
        batches = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c : c + chunk], key=lambda i: (len(self.pairs[i][0]), len(self.pairs[i][1])))
            cur, longest = [], 0
            for i in part:
                n = len(self.pairs[i][0]) + len(self.pairs[i][1]) + 1
                if cur and max(longest, n) * (len(cur) + 1) > max_tokens:
                    batches.append(cur)
                    cur, longest = [], 0
                cur.append(i)
                longest = max(longest, n)
            if cur:
                batches.append(cur)
        if shuffle:
            perm = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[p] for p in perm]
        return batches
