"""Hugging Face checkpoint directories <-> polyformer models (ViT here; Jamba and Mamba in ``hf_jamba``).

``from_hf(path)`` reads ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, loaded with
``torch.load(weights_only=True)``) and accepts both state-dict layouts of transformers: 4.x names (what
checkpoints on the Hub contain, and what transformers 5.x still writes to disk) and the 5.x in-memory
names. ``to_hf(model, path)`` writes the 4.x/Hub layout, which both major versions load.

ViT key names (prefix ``vit.``; a bare ``ViTModel`` has none), per layer i:
    4.x  encoder.layer.i.{layernorm_before, attention.attention.{query,key,value}, attention.output.dense,
         layernorm_after, intermediate.dense, output.dense}
    5.x  layers.i.{layernorm_before, attention.{q_proj,k_proj,v_proj,o_proj}, layernorm_after, mlp.fc1, mlp.fc2}
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io import atomic_write_bytes, atomic_write_json, read_json

_ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}

# ours -> HF 4.x, per ViT layer
_VIT_LAYER_4 = {
    "norm1": "layernorm_before",
    "self_attn.q_proj": "attention.attention.query",
    "self_attn.k_proj": "attention.attention.key",
    "self_attn.v_proj": "attention.attention.value",
    "self_attn.out_proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_VIT_LAYER_5 = {
    "norm1": "layernorm_before",
    "self_attn.q_proj": "attention.q_proj",
    "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj",
    "self_attn.out_proj": "attention.o_proj",
    "norm2": "layernorm_after",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_VIT_TOP = {
    "patch_embed": "vit.embeddings.patch_embeddings.projection",
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "norm": "vit.layernorm",
    "head": "classifier",
}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    st, binf = path / "model.safetensors", path / "pytorch_model.bin"
    try:
        if st.is_file():
            from safetensors.torch import load_file

            return load_file(str(st))
        if binf.is_file():
            return torch.load(binf, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is a corrupt file to the user
        raise CheckpointError(f"corrupt weights in {path}: {e}") from None
    raise CheckpointError(f"no weights in {path}: expected model.safetensors or pytorch_model.bin")


def _vit_hf_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any(k.startswith("vit.") for k in state):  # bare ViTModel
        state = {f"vit.{k}": v for k, v in state.items()}
    top = {v: k for k, v in _VIT_TOP.items()}
    out: dict[str, torch.Tensor] = {}
    layer_re = re.compile(r"^vit\.(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
    inverse = {v: k for k, v in _VIT_LAYER_4.items()} | {v: k for k, v in _VIT_LAYER_5.items()}
    for key, value in state.items():
        m = layer_re.match(key)
        if m:
            i, name, kind = m.groups()
            if name not in inverse:
                raise CheckpointError(f"unexpected ViT weight '{key}'")
            out[f"blocks.{i}.{inverse[name]}.{kind}"] = value
            continue
        base, _, kind = key.rpartition(".")
        if key in top:  # parameters without .weight (cls_token, position_embeddings)
            out[top[key]] = value
        elif base in top:
            out[f"{top[base]}.{kind}"] = value
        elif key.startswith(("vit.pooler.", "vit.embeddings.mask_token")):
            continue  # not used by image classification
        else:
            raise CheckpointError(f"unexpected ViT weight '{key}'")
    return out


def _vit_config_from_hf(hf: dict):
    from ..models.vit import ViTConfig

    image, patch = hf.get("image_size", 224), hf.get("patch_size", 16)
    for name, v in (("image_size", image), ("patch_size", patch)):
        if isinstance(v, (list, tuple)):
            if len(set(v)) != 1:
                raise CheckpointError(f"non-square {name} {v} is not supported yet")
    image = image[0] if isinstance(image, (list, tuple)) else image
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    if not hf.get("qkv_bias", True):
        raise CheckpointError("ViT checkpoints with qkv_bias=False are not supported yet")
    act = hf.get("hidden_act", "gelu")
    if act not in _ACT_FROM_HF:
        raise CheckpointError(f"unsupported hidden_act '{act}' (supported: {', '.join(_ACT_FROM_HF)})")
    num_labels = len(hf["id2label"]) if "id2label" in hf else hf.get("num_labels", 2)
    return ViTConfig(
        image_size=image,
        patch_size=patch,
        num_channels=hf.get("num_channels", 3),
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        num_classes=num_labels,
        activation=_ACT_FROM_HF[act],
        dropout=hf.get("hidden_dropout_prob", 0.0),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
    )


SUPPORTED = ("vit", "jamba", "mamba")


def from_hf(path: str | os.PathLike):
    """Load a Hugging Face checkpoint directory (ViT, Jamba or Mamba) as a polyformer model."""
    from ..registry import build_model
    from . import hf_jamba

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a Hugging Face checkpoint directory")
    hf = read_json(path / "config.json", "Hugging Face config")
    kind = hf.get("model_type")
    if kind not in SUPPORTED:
        raise CheckpointError(f"model_type '{kind}' is not supported by from_hf (supported: {', '.join(SUPPORTED)})")
    if kind == "vit":
        config = _vit_config_from_hf(hf)
    elif kind == "jamba":
        config = hf_jamba.jamba_config_from_hf(hf)
    else:
        config = hf_jamba.mamba_config_from_hf(hf)
    model = build_model(config)
    raw = _read_state(path)
    if kind == "vit":
        state = _vit_hf_to_ours(raw)
    elif kind == "jamba":
        state = hf_jamba.jamba_state_from_hf(raw)
    else:
        state = hf_jamba.mamba_state_from_hf(raw)
    from ..modeling import _alias_groups

    alias = _alias_groups(model)
    own = {k: v for k, v in model.state_dict().items() if k not in alias}
    if kind == "vit" and "head.weight" not in state:
        warnings.warn("checkpoint has no classifier: the head is freshly initialised", stacklevel=2)
        state["head.weight"], state["head.bias"] = own["head.weight"], own["head.bias"]
    for k in alias:  # tied weights (Mamba's lm_head) may be stored under either name
        state.pop(k, None)
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"weights in {path} do not fit its config: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"'{k}' has shape {tuple(state[k].shape)} in {path}, config needs {tuple(v.shape)}")
    model.load_state_dict(state, strict=False)
    if kind == "vit":
        model.hf_labels = hf.get("id2label")
    return model.eval()


def to_hf(model, path: str | os.PathLike) -> Path:
    """Write ``model`` as a Hugging Face checkpoint directory (4.x/Hub key layout)."""
    from safetensors.torch import save

    cfg = model.config
    if cfg.family == "jamba":
        from safetensors.torch import save

        from .hf_jamba import jamba_to_hf

        state, config = jamba_to_hf(model)
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        atomic_write_bytes(path / "model.safetensors", save(state, metadata={"format": "pt"}))
        atomic_write_json(path / "config.json", config)
        return path
    if cfg.family != "vit":
        raise CheckpointError(f"to_hf supports the vit and jamba families, not '{cfg.family}'")
    if cfg.pooling != "cls" or not cfg.bias or cfg.activation not in _ACT_TO_HF or cfg.norm != "layernorm":
        raise CheckpointError("only models with cls pooling, biases, LayerNorm and GELU/ReLU map onto HF ViT")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            name, _, kind = rest.rpartition(".")
            state[f"vit.encoder.layer.{i}.{_VIT_LAYER_4[name]}.{kind}"] = value
        elif key in _VIT_TOP:
            state[_VIT_TOP[key]] = value
        else:
            base, _, kind = key.rpartition(".")
            state[f"{_VIT_TOP[base]}.{kind}"] = value
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path / "model.safetensors", save(state, metadata={"format": "pt"}))
    labels = getattr(model, "hf_labels", None) or {str(i): f"LABEL_{i}" for i in range(cfg.num_classes)}
    atomic_write_json(
        path / "config.json",
        {
            "architectures": ["ViTForImageClassification"],
            "model_type": "vit",
            "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads,
            "intermediate_size": cfg.d_ff,
            "hidden_act": _ACT_TO_HF[cfg.activation],
            "hidden_dropout_prob": cfg.dropout,
            "attention_probs_dropout_prob": cfg.attn_dropout,
            "layer_norm_eps": cfg.norm_eps,
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "num_channels": cfg.num_channels,
            "qkv_bias": True,
            "initializer_range": 0.02,
            "id2label": labels,
            "label2id": {v: int(k) for k, v in labels.items()},
        },
    )
    return path
