"""What every polyformer model shares: outputs, parameter counting, save/load.

A checkpoint is a directory with ``config.json`` (family, config fields, library version),
``model.safetensors`` (weights; tensors tied to another, such as an output projection tied to the
embedding, are stored once) and, when the model carries one, ``tokenizer.json``. Every file is
written atomically (temp file + rename), so an interrupted save never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .io import atomic_write_bytes, atomic_write_json, read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"


@dataclasses.dataclass
class ModelOutput:
    """``logits`` always; ``loss`` when labels were given; ``cache`` when decoding incrementally."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    cache: Any = None
    hidden_states: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


def _alias_groups(module: nn.Module) -> dict[str, str]:
    """Map each state-dict key whose tensor aliases an earlier key to that earlier key."""
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for name, t in module.state_dict(keep_vars=True).items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))
        if key in first:
            alias[name] = first[key]
        else:
            first[key] = name
    return alias


class PolyModel(nn.Module):
    """Base class: subclasses set ``config`` (a dataclass) in ``__init__``."""

    config: Any
    tokenizer: Any = None

    def num_parameters(self, trainable_only: bool = False, exclude_embeddings: bool = False) -> int:
        """Count parameters once each (tied weights once); optionally skip token/position tables."""
        skip = set()
        if exclude_embeddings:
            for m in self.modules():
                if isinstance(m, nn.Embedding) or "Positional" in type(m).__name__:
                    skip.update(id(p) for p in m.parameters(recurse=False))
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) in seen or id(p) in skip or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total

    # ----------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
        from safetensors.torch import save

        from . import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        alias = _alias_groups(self)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k not in alias}
        meta = {"family": self.config.family, "format": "polyformer"}
        atomic_write_bytes(directory / WEIGHTS_NAME, save(tensors, metadata=meta))
        atomic_write_json(
            directory / CONFIG_NAME,
            {
                "family": self.config.family,
                "config": self.config.to_dict(),
                "polyformer_version": __version__,
            },
        )
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is not None:
            tokenizer.save(directory / TOKENIZER_NAME)
        return directory

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load ``model.safetensors`` strictly: every key present, no extra key, same shapes."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"missing weights file: {path} does not exist")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"corrupt weights file {path}: {e}") from None
        alias = _alias_groups(self)
        own = {k: v for k, v in self.state_dict().items() if k not in alias}
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise CheckpointError(
                f"weights in {path} do not fit this model's config: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})"
            )
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise CheckpointError(
                    f"weights in {path}: '{k}' has shape {tuple(state[k].shape)}, the config needs {tuple(v.shape)}"
                )
        self.load_state_dict(state, strict=False)


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> PolyModel:
    """Load a model saved with ``save_pretrained``: config, weights and (if present) tokenizer."""
    from .registry import model_from_config_dict

    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory (expected config.json + model.safetensors)")
    meta = read_json(directory / CONFIG_NAME, "checkpoint config")
    if not isinstance(meta, dict) or "family" not in meta or "config" not in meta:
        raise CheckpointError(f"corrupt checkpoint config {directory / CONFIG_NAME}: needs 'family' and 'config'")
    model = model_from_config_dict(meta["family"], meta["config"])
    model.load_weights(directory / WEIGHTS_NAME)
    if (directory / TOKENIZER_NAME).exists():
        from .data.tokenizers import load_tokenizer

        model.tokenizer = load_tokenizer(directory / TOKENIZER_NAME)
    model.eval()
    return model.to(map_location)
