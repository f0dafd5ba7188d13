"""Synthetic benchmark tasks, generated on the fly (no download)."""

from .synthetic import SEQ2SEQ_TASKS, make_pairs

__all__ = ["SEQ2SEQ_TASKS", "make_pairs"]
