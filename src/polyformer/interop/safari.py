"""HazyResearch safari / HyenaDNA state dicts -> polyformer Hyena modules.

``from_safari(path_or_state)`` accepts a state dict (a dict, a ``.safetensors`` file, or a torch file
read with ``weights_only=True``) in one of two layouts:
* a standalone ``HyenaOperator``: in_proj, short_filter, filter_fn.*, out_proj  -> :class:`HyenaOperator`
* a safari ``lm_simple`` / HyenaDNA LM: backbone.embeddings.word_embeddings, backbone.layers.{i}.
  {mixer, norm1, norm2, mlp.fc1, mlp.fc2}, backbone.ln_f (Lightning's ``model.`` prefix and gradient
  checkpointing's ``.layer`` infixes are removed)  -> :class:`HyenaLM`
Sizes are read from the tensor shapes. safari's quirks are reproduced as its weights need: a trained
positional table (``trainable_pos``), its frequency grid (``pos_freqs="safari"``), and one shared sine
frequency when the stored ones are equal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import CheckpointError


def _load(src) -> dict[str, torch.Tensor]:
    if isinstance(src, dict):
        state = src.get("state_dict", src)
    else:
        path = Path(src)
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
                state = state.get("state_dict", state) if isinstance(state, dict) else state
        except Exception as e:  # noqa: BLE001 - an unreadable file is a corrupt checkpoint to the user
            raise CheckpointError(f"cannot read {path} as a state dict: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a state dict mapping names to tensors")
    return state


def _operator_kwargs(state: dict[str, torch.Tensor], prefix: str, l_max: int | None) -> dict:
    try:
        w_in = state[f"{prefix}in_proj.weight"]
        first = state[f"{prefix}filter_fn.implicit_filter.0.weight"]
    except KeyError as e:
        raise CheckpointError(f"not a safari Hyena operator state dict: missing {e.args[0]}") from None
    d = w_in.shape[1]
    order = w_in.shape[0] // d - 1
    filter_order, emb_dim = first.shape
    z = state.get(f"{prefix}filter_fn.pos_emb.z")
    if z is not None:
        l_max = z.shape[1]
    elif l_max is None:
        raise CheckpointError("the state dict has no positional table: pass l_max")
    idx = sorted(
        int(m.group(1))
        for k in state
        if (m := re.fullmatch(re.escape(prefix) + r"filter_fn\.implicit_filter\.(\d+)\.weight", k))
    )
    freqs = [v for k, v in state.items() if k.startswith(f"{prefix}filter_fn.implicit_filter.") and k.endswith(".freq")]
    shared = len(freqs) > 1 and all(torch.equal(f, freqs[0]) for f in freqs)
    return dict(
        d_model=d,
        l_max=l_max,
        order=order,
        filter_order=filter_order,
        emb_dim=emb_dim,
        short_filter_order=state[f"{prefix}short_filter.weight"].shape[-1],
        num_inner_mlps=len(idx) - 2,
        trainable_pos=z is not None,
        pos_freqs="safari",
        shared_sin=shared,
    )


def from_safari(src: str | os.PathLike | dict, l_max: int | None = None):
    """Build the matching polyformer module and load the weights; returns it in eval mode."""
    state = {re.sub(r"^model\.", "", k): v for k, v in _load(src).items()}
    state = {k.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        return _lm_from_state(state, l_max)
    from ..layers.hyena import HyenaOperator

    op = HyenaOperator(**_operator_kwargs(state, "", l_max)).to(state["in_proj.weight"].dtype)
    _strict_load(op, state)
    return op.eval()


def _lm_from_state(state: dict[str, torch.Tensor], l_max: int | None):
    from ..models.hyena import HyenaConfig, HyenaLM

    rename = {}
    for k in state:
        new = k.replace("backbone.embeddings.word_embeddings.", "embed.").replace("backbone.ln_f.", "norm.")
        rename[k] = re.sub(r"^backbone\.layers\.(\d+)\.", r"blocks.\1.", new)
    ours = {rename[k]: v for k, v in state.items() if not k.startswith("head.")}
    layers = sorted({int(m.group(1)) for k in ours if (m := re.match(r"blocks\.(\d+)\.", k))})
    if not layers or "embed.weight" not in ours:
        raise CheckpointError("not a safari/HyenaDNA LM state dict (no backbone.layers or word embeddings)")
    kw = _operator_kwargs(ours, "blocks.0.mixer.", l_max)
    vocab, d = ours["embed.weight"].shape
    cfg = HyenaConfig(
        vocab_size=vocab,
        d_model=d,
        n_layers=len(layers),
        d_ff=ours["blocks.0.mlp.fc1.weight"].shape[0],
        max_seq_len=kw["l_max"],
        order=kw["order"],
        filter_order=kw["filter_order"],
        emb_dim=kw["emb_dim"],
        short_filter_order=kw["short_filter_order"],
        num_inner_mlps=kw["num_inner_mlps"],
        trainable_pos=kw["trainable_pos"],
        pos_freqs="safari",
        shared_sin=kw["shared_sin"],
        tie_embeddings="lm_head.weight" not in ours or torch.equal(ours["lm_head.weight"], ours["embed.weight"]),
    )
    model = HyenaLM(cfg).to(ours["embed.weight"].dtype)
    if cfg.tie_embeddings:
        ours.pop("lm_head.weight", None)
    _strict_load(model, ours)
    return model.eval()


def _strict_load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from ..modeling import _alias_groups

    alias = _alias_groups(module)
    own = {k: v for k, v in module.state_dict().items() if k not in alias}
    # safari keeps the shared sine frequency under every index: load them all (equal tensors)
    missing = sorted(set(own) - set(state))
    extra = sorted(k for k in set(state) - set(own) if k not in alias)
    if missing or extra:
        raise CheckpointError(f"state dict does not fit: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"'{k}' has shape {tuple(state[k].shape)}, the module needs {tuple(v.shape)}")
    module.load_state_dict({k: state[k] for k in own}, strict=False)
