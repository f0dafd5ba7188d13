"""Tokenizers: byte-level, character-level, and BPE trained on the user's corpus.

All share one interface: ``encode(text, add_bos=False, add_eos=False) -> list[int]``,
``decode(ids) -> str`` (special tokens dropped), ``vocab_size``, ``pad_id``/``bos_id``/``eos_id``
(``None`` when the tokenizer has no specials), ``save(path)`` and :func:`load_tokenizer`.
Saved as one ``tokenizer.json`` next to the model weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import CheckpointError, DataError
from ..io import atomic_write_json, read_json

SPECIALS = ("<pad>", "<bos>", "<eos>")


class _Base:
    kind = ""
    specials: tuple[str, ...] = ()

    @property
    def pad_id(self):
        return self.specials.index("<pad>") if "<pad>" in self.specials else None

    @property
    def bos_id(self):
        return self.specials.index("<bos>") if "<bos>" in self.specials else None

    @property
    def eos_id(self):
        return self.specials.index("<eos>") if "<eos>" in self.specials else None

    def _wrap(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        if (add_bos and self.bos_id is None) or (add_eos and self.eos_id is None):
            raise DataError(f"this {self.kind} tokenizer has no <bos>/<eos> tokens")
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(self, texts: Iterable[str], **kw) -> list[list[int]]:
        return [self.encode(t, **kw) for t in texts]

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, self.to_dict())


class ByteTokenizer(_Base):
    """UTF-8 bytes; ids 0..2 are <pad>, <bos>, <eos> and byte b has id b + 3 (vocab 259)."""

    kind = "byte"

    def __init__(self, specials: tuple[str, ...] = SPECIALS):
        self.specials = tuple(specials)

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.specials)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        n = len(self.specials)
        return self._wrap([b + n for b in text.encode("utf-8")], add_bos, add_eos)

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.specials)
        return bytes(i - n for i in ids if n <= i < 256 + n).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"type": "byte", "specials": list(self.specials)}


class CharTokenizer(_Base):
    """One id per character of a fixed alphabet (built from a corpus), after the special tokens.

    With ``specials=()`` it is exactly nanoGPT's shakespeare_char encoding (sorted characters)."""

    kind = "char"

    def __init__(self, chars: Iterable[str], specials: tuple[str, ...] = SPECIALS):
        self.specials = tuple(specials)
        self.chars = list(chars)
        self.stoi = {c: i + len(self.specials) for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str, specials: tuple[str, ...] = SPECIALS) -> CharTokenizer:
        return cls(sorted(set(text)), specials)

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + len(self.chars)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        try:
            ids = [self.stoi[c] for c in text]
        except KeyError as e:
            raise DataError(f"character {e.args[0]!r} is not in this tokenizer's alphabet") from None
        return self._wrap(ids, add_bos, add_eos)

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.specials)
        return "".join(self.chars[i - n] for i in ids if n <= i < n + len(self.chars))

    def to_dict(self) -> dict:
        return {"type": "char", "specials": list(self.specials), "chars": self.chars}


class BPETokenizer(_Base):
    """Byte-level BPE from the ``tokenizers`` library, trained on the user's corpus.

    Specials <pad>, <bos>, <eos> take ids 0, 1, 2 (and <unk> 3)."""

    kind = "bpe"
    specials = SPECIALS

    def __init__(self, hf_tokenizer):
        self.tok = hf_tokenizer

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, lowercase: bool = False
    ) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        norms = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(norms)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[*SPECIALS, "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        return self._wrap(self.tok.encode(text).ids, add_bos, add_eos)

    def encode_batch(self, texts, add_bos: bool = False, add_eos: bool = False):
        return [self._wrap(e.ids, add_bos, add_eos) for e in self.tok.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    def to_dict(self) -> dict:
        return {"type": "bpe", "specials": list(SPECIALS), "hf": json.loads(self.tok.to_str())}


def tokenizer_from_dict(d: dict):
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == "byte":
        return ByteTokenizer(tuple(d.get("specials", SPECIALS)))
    if kind == "char":
        return CharTokenizer(d["chars"], tuple(d.get("specials", SPECIALS)))
    if kind == "bpe":
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_str(json.dumps(d["hf"])))
    raise CheckpointError(f"unknown tokenizer type {kind!r}: expected 'byte', 'char' or 'bpe'")


def load_tokenizer(path: str | os.PathLike):
    """Load a ``tokenizer.json`` written by ``save`` (a file, or a checkpoint directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    d = read_json(path, "tokenizer file")
    try:
        return tokenizer_from_dict(d)
    except (KeyError, TypeError, Exception) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"corrupt tokenizer file {path}: {e}") from None
