"""Associative recall (Hyena paper, section 4.1; safari's ``icl_synthetics`` generator).

Vocabulary of V tokens: V - 2 ordinary tokens (the strings "0" .. "V-3" sorted lexicographically,
the first half used as keys, the second half as values) and two specials, the copy prefix "=>" and
the no-op ".". Each example draws its own key -> value map, writes ``seq_len // 2`` random (key,
value) pairs, then "=>", a key that occurred, and that key's value:
    a 1 c 4 b 2 a 1 => c 4
The model sees the sequence without its last token and predicts the next token at every position;
training scores every position (as safari does), testing only the last: the recalled value.
Examples are de-duplicated; train and test sets come from different seeds.
"""

from __future__ import annotations

import random

import torch


def vocabulary(vocab_size: int) -> list[str]:
    if vocab_size < 6:
        raise ValueError(f"vocab_size must be at least 6 (2 specials, 2 keys, 2 values), got {vocab_size}")
    return sorted(str(i) for i in range(vocab_size - 2)) + ["=>", "."]


def make_examples(n: int, seq_len: int, vocab_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs [n, seq_len + 2], train targets, test targets), targets shifted by one position;
    test targets are -100 except at the last position."""
    vocab = vocabulary(vocab_size)
    n_plain = vocab_size - 2
    keys, values = list(range(n_plain // 2)), list(range(n_plain // 2, n_plain))
    copy = vocab.index("=>")
    rng = random.Random(seed)
    seen, rows = set(), []
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise ValueError(f"cannot draw {n} distinct examples of length {seq_len} with vocab_size={vocab_size}")
        kv = {k: rng.choice(values) for k in keys}
        seq = []
        for _ in range(seq_len // 2):
            k = rng.choice(keys)
            seq += [k, kv[k]]
        q = rng.choice(seq[0::2])
        seq += [copy, q, kv[q]]
        t = tuple(seq)
        if t in seen:
            continue
        seen.add(t)
        rows.append(seq)
    data = torch.tensor(rows, dtype=torch.long)
    inputs, targets = data[:, :-1], data[:, 1:]
    test = torch.full_like(targets, -100)
    test[:, -1] = targets[:, -1]
    return inputs, targets.clone(), test
