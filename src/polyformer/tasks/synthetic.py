"""Digit-string sequence-to-sequence tasks.

* ``reverse``: "40172" -> "27104"
* ``sort``:    "40172" -> "01247"
* ``add``:     "407+1985" -> "2392"

Each draws lengths uniformly in [min_len, max_len] from a seeded ``random.Random``, so train and
test sets come from different seeds and are reproducible.
"""

from __future__ import annotations

import random

ALPHABET = "0123456789+"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def reverse_pair(rng, min_len, max_len):
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, s[::-1]


def sort_pair(rng, min_len, max_len):
    s = _digits(rng, rng.randint(min_len, max_len))
    return s, "".join(sorted(s))


def add_pair(rng, min_len, max_len):
    a = rng.randint(0, 10 ** rng.randint(min_len, max_len) - 1)
    b = rng.randint(0, 10 ** rng.randint(min_len, max_len) - 1)
    return f"{a}+{b}", str(a + b)


SEQ2SEQ_TASKS = {"reverse": reverse_pair, "sort": sort_pair, "add": add_pair}


def make_pairs(task: str, n: int, seed: int, min_len: int = 1, max_len: int = 12) -> list[tuple[str, str]]:
    if task not in SEQ2SEQ_TASKS:
        raise ValueError(f"unknown synthetic task {task!r}: choose from {sorted(SEQ2SEQ_TASKS)}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    fn = SEQ2SEQ_TASKS[task]
    return [fn(rng, min_len, max_len) for _ in range(n)]
