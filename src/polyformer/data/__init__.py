"""Data: tokenizers and datasets."""

from .tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, load_tokenizer

__all__ = ["BPETokenizer", "ByteTokenizer", "CharTokenizer", "load_tokenizer"]
