"""Model size, compute and memory estimates (``polyformer info``).

* FLOPs per token, forward (Kaplan et al. 2020, eq. 2.2): 2 N + 2 n_layer n_ctx d_attn, where N counts
  the weights of every matrix multiply (the LM head included, embedding look-ups excluded) and the
  second term is the QK^T and AV products of each attention layer at context n_ctx. A training step
  costs about three times the forward.
* Activation memory for training, per layer (Korthikanti et al. 2022, no recomputation):
  s b h (34 + 5 a s / h) bytes in 16-bit, scaled by the dtype width.
* KV cache: 2 (K and V) x attention layers x n_kv_heads x head_dim x length x batch x bytes.
* Hybrid models (Jamba): FLOPs count only the top_k active experts of each MoE layer; Mamba layers
  keep d_inner x (d_conv - 1 + d_state) numbers per sequence whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .registry import build_model, get_config

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}


@dataclass
class ModelStats:
    name: str
    parameters: int
    matmul_parameters: int
    flops_per_token_forward: float
    flops_per_token_train: float
    weight_bytes: int
    activation_bytes_train: int
    kv_cache_bytes: int
    seq_len: int
    batch_size: int
    dtype: str
    active_parameters: int | None = None  # mixture of experts: parameters used per token
    state_bytes: int = 0  # recurrent state (Mamba layers), independent of the length


def _count_matmul(model: nn.Module) -> int:
    seen, n = set(), 0
    for m in model.modules():
        # a patch convolution with stride == kernel is a matrix multiply per patch
        if isinstance(m, (nn.Linear, nn.Conv2d)) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            n += m.weight.numel()
    return n


def model_stats(
    name: str, seq_len: int | None = None, batch_size: int = 1, dtype: str = "bfloat16", **overrides
) -> ModelStats:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    cfg = get_config(name, **overrides)
    with torch.device("meta"):
        model = build_model(cfg)
    seq_len = seq_len or cfg.max_seq_len
    nbytes = DTYPE_BYTES[dtype]
    n_params = model.num_parameters()
    n_mm = _count_matmul(model)
    d = cfg.d_model
    arch = getattr(cfg, "arch", "encoder")  # families without `arch` (ViT) are encoders: no KV cache
    head_dim = cfg.d_model // cfg.n_heads
    if hasattr(cfg, "layer_types"):  # hybrid (Jamba / Mamba): attention in some layers, SSM state in the rest
        return _hybrid_stats(name, cfg, model, n_params, n_mm, seq_len, batch_size, dtype, nbytes)
    if arch == "encoder-decoder":
        enc, dec = cfg.n_layers, cfg.decoder_layers
        attn_layers = enc + 2 * dec  # encoder self, decoder self and cross
        kv_layers = dec
        cross_kv = 2 * dec * (cfg.n_kv_heads or cfg.n_heads) * head_dim * seq_len * batch_size * nbytes
        layers = enc + dec
    else:
        attn_layers = layers = cfg.n_layers
        kv_layers = 0 if arch == "encoder" else cfg.n_layers  # an encoder classifier keeps no cache
        cross_kv = 0
    fwd = 2 * n_mm + 2 * attn_layers * seq_len * d
    kv = 2 * kv_layers * (cfg.n_kv_heads or cfg.n_heads) * head_dim * seq_len * batch_size * nbytes + cross_kv
    act = int(layers * seq_len * batch_size * d * (34 + 5 * cfg.n_heads * seq_len / d) * nbytes / 2)
    return ModelStats(
        name, n_params, n_mm, float(fwd), float(3 * fwd), n_params * nbytes, act, kv, seq_len, batch_size, dtype
    )


def _hybrid_stats(name, cfg, model, n_params, n_mm, seq_len, batch_size, dtype, nbytes) -> ModelStats:
    """Jamba/Mamba: only top_k of an MoE layer's experts run per token; only attention layers keep
    keys and values; Mamba layers keep a fixed-size state (conv inputs and SSM state) at any length."""
    d, head_dim = cfg.d_model, cfg.d_model // cfg.n_heads
    n_attn = cfg.layer_types.count("attention")
    n_mamba = cfg.n_layers - n_attn
    idle_experts = sum(e - cfg.top_k for e in cfg.layer_experts if e > 1)
    per_expert = 3 * d * cfg.d_ff
    active_mm = n_mm - idle_experts * per_expert
    fwd = 2 * active_mm + 2 * n_attn * seq_len * d
    kv = 2 * n_attn * cfg.n_kv_heads * head_dim * seq_len * batch_size * nbytes
    state = n_mamba * cfg.d_inner * (cfg.d_conv - 1 + cfg.d_state) * batch_size * nbytes
    act = int(seq_len * batch_size * d * (34 * cfg.n_layers + 5 * cfg.n_heads * seq_len / d * n_attn) * nbytes / 2)
    return ModelStats(
        name,
        n_params,
        n_mm,
        float(fwd),
        float(3 * fwd),
        n_params * nbytes,
        act,
        kv,
        seq_len,
        batch_size,
        dtype,
        active_parameters=model.active_parameters(),
        state_bytes=state,
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n: float) -> str:
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))
