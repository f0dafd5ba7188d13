"""Checkpoint converters: Hugging Face directories in and out."""

from .hf import from_hf, to_hf
from .safari import from_safari

__all__ = ["from_hf", "from_safari", "to_hf"]
