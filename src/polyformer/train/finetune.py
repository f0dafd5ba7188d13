"""Fine-tuning a trained model on new data: a new classification head, frozen early blocks, and
layer-wise learning-rate decay.

Depth of a parameter: 0 for the stem (patch or token embedding, class token, positions), i for the
parameters of block i (1..L), L + 1 for everything after the last block (final norm, head).

Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA; Bao et al. 2021, BEiT): a parameter at
depth i trains with
    lr_i = lr * decay^(L + 1 - i)
so the head keeps the full rate and each block below it a factor ``decay`` less.

``trainable_blocks = k`` freezes every parameter except those of the last k blocks and of the
head (depth > L - k); k = 0 trains the head alone (a linear probe).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..modeling import _alias_groups

_BLOCK = re.compile(r"^(?P<stack>(?:.*\.)?(?:blocks|layers))\.(?P<index>\d+)\.")


def block_stack(model: nn.Module) -> tuple[str, int]:
    """(name, depth) of the model's one stack of blocks: 'blocks' for ViT and Activator,
    'blocks.layers' for a Transformer LM, 'encoder.layers' for a classifier. Encoder-decoder models have two stacks and
    are refused."""
    stacks: dict[str, set[int]] = {}
    for name, _ in model.named_parameters():
        m = _BLOCK.match(name)
        if m:
            stacks.setdefault(m["stack"], set()).add(int(m["index"]))
    if len(stacks) != 1:
        found = ", ".join(sorted(stacks)) or "none"
        raise ConfigError(
            f"{type(model).__name__}: freezing and layer-wise decay need exactly one stack of blocks (found: {found})"
        )
    [(stack, indices)] = stacks.items()
    return stack, max(indices) + 1


def layer_depths(model: nn.Module) -> dict[str, int]:
    """Map each parameter name to its depth: 0 (stem), 1..L (blocks), L + 1 (after the blocks).
    Parameters shared between places (tied weights) take the depth of their first name."""
    stack, n = block_stack(model)
    depths, seen_block = {}, False
    for name, _ in model.named_parameters(remove_duplicate=False):
        m = _BLOCK.match(name)
        if m and m["stack"] == stack:
            depths[name], seen_block = int(m["index"]) + 1, True
        else:
            depths[name] = n + 1 if seen_block else 0
    return depths


def freeze_all_but_last(model: nn.Module, k: int) -> int:
    """Freeze every parameter except the last ``k`` blocks and what follows them (final norm, head);
    returns the number of trainable parameters left. ``k < 0`` unfreezes everything."""
    _, n = block_stack(model)
    if k > n:
        raise ConfigError(f"trainable_blocks must be at most the model's {n} blocks (or -1 for all), got {k}")
    first_id = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        first_id.setdefault(id(p), name)
    depths = layer_depths(model)
    for p in model.parameters():
        p.requires_grad_(k < 0 or depths[first_id[id(p)]] > n - k)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Give a classifier (``model.head``, a Linear) a freshly initialised head for ``num_classes``
    classes, and record the new count in ``model.config``."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear) or not hasattr(model.config, "num_classes"):
        raise ConfigError(f"{type(model).__name__} has no classification head to replace")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes}")
    new = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    new.to(device=head.weight.device, dtype=head.weight.dtype)
    nn.init.trunc_normal_(new.weight, std=0.02)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    model.head = new
    model.config = model.config.replace(num_classes=num_classes)


def load_for_finetuning(model: nn.Module, directory: str | Path, log=print) -> None:
    """Load a checkpoint's weights into ``model`` for fine-tuning. Every tensor must fit, except:
    the head, when ``model`` has another number of classes (it keeps its fresh initialisation), and
    whatever the model adapts itself (``adapt_checkpoint_state``: ViT resizes its position table)."""
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"init_from: {path} does not exist")
    state = load_file(str(path))
    if hasattr(model, "adapt_checkpoint_state"):
        for note in model.adapt_checkpoint_state(state):
            log(note)
    own = model.state_dict()
    head_keys = [k for k in state if k.startswith("head.")]
    if head_keys and any(k in own and own[k].shape != state[k].shape for k in head_keys):
        had = state["head.weight"].shape[0]
        log(f"init_from: new head for {model.config.num_classes} classes (the checkpoint had {had})")
        for k in head_keys:
            state[k] = own[k]
    alias = _alias_groups(model)
    missing = sorted(k for k in own if k not in state and k not in alias)
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"init_from {directory}: the checkpoint does not fit the model "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(extra)} unexpected, e.g. {extra[:3]})"
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"init_from {directory}: '{k}' has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)}"
            )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
