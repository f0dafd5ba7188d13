"""Checkpoint converters: Hugging Face directories in and out."""

from .hf import from_hf, to_hf

__all__ = ["from_hf", "to_hf"]
