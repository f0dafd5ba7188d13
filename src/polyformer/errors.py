"""Errors that polyformer raises on bad input.

Every error a user can cause derives from :class:`PolyformerError` so the CLI can print it as one
actionable line. They also derive from the matching builtin (``ValueError``, ``KeyError``,
``FileNotFoundError``) so ordinary ``except`` clauses keep working.
"""

from __future__ import annotations

import difflib


class PolyformerError(Exception):
    """Base class for every error that a user's input can cause."""


class ConfigError(PolyformerError, ValueError):
    """A configuration value is out of range or a configuration key does not exist."""


class UnknownModelError(PolyformerError, KeyError):
    """``create_model`` was given a name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SequenceTooLongError(PolyformerError, ValueError):
    """An input is longer than the model's ``max_seq_len``."""


class CheckpointError(PolyformerError, OSError):
    """A checkpoint directory or file is missing or corrupt."""


class DataError(PolyformerError, ValueError):
    """Input data (a file, a batch) is malformed."""


def suggest(name: str, choices, n: int = 3) -> str:
    """Return ' Did you mean: a, b?' for the closest ``choices`` to ``name`` (or '')."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
