"""Hugging Face Jamba and Mamba checkpoints <-> polyformer ``jamba`` family models.

Jamba (prefix ``model.``): our names are Hugging Face's, except the attention output projection
(``self_attn.out_proj`` here, ``self_attn.o_proj`` there). Experts come in two layouts:
    4.x / Hub files   feed_forward.experts.{e}.{gate_proj,up_proj,down_proj}.weight   ([F, H], [F, H], [H, F])
    5.x in memory     feed_forward.experts.gate_up_proj [E, 2F, H] (gate rows first), .down_proj [E, H, F]
Mamba: backbone.embeddings -> embed_tokens, backbone.layers.{i}.norm -> layers.{i}.input_layernorm,
backbone.layers.{i}.mixer -> layers.{i}.mamba, backbone.norm_f -> final_layernorm; lm_head is tied.
``to_hf`` writes the 4.x/Hub layout, which both major versions of transformers load.
"""

from __future__ import annotations

import re

import torch

from ..errors import CheckpointError


def jamba_config_from_hf(hf: dict):
    from ..models.jamba import JambaConfig

    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"Jamba with hidden_act '{hf['hidden_act']}' is not supported (only silu)")
    dt_rank = hf.get("mamba_dt_rank", "auto")
    return JambaConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        max_seq_len=hf.get("max_position_embeddings", 262144),
        attn_layer_period=hf.get("attn_layer_period", 8),
        attn_layer_offset=hf.get("attn_layer_offset", 4),
        expert_layer_period=hf.get("expert_layer_period", 2),
        expert_layer_offset=hf.get("expert_layer_offset", 1),
        num_experts=hf.get("num_experts", hf.get("num_local_experts", 16)),
        top_k=hf.get("num_experts_per_tok", 2),
        router_aux_loss_coef=hf.get("router_aux_loss_coef", 0.001),
        d_state=hf.get("mamba_d_state", 16),
        d_conv=hf.get("mamba_d_conv", 4),
        expand=hf.get("mamba_expand", 2),
        dt_rank=0 if dt_rank == "auto" else int(dt_rank),
        conv_bias=hf.get("mamba_conv_bias", True),
        proj_bias=hf.get("mamba_proj_bias", False),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        attn_dropout=hf.get("attention_dropout", 0.0),
        initializer_range=hf.get("initializer_range", 0.02),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        pad_token_id=hf.get("pad_token_id") or 0,
        bos_token_id=hf.get("bos_token_id") if hf.get("bos_token_id") is not None else 1,
        eos_token_id=hf.get("eos_token_id") if hf.get("eos_token_id") is not None else 2,
    )


def mamba_config_from_hf(hf: dict):
    from ..models.jamba import JambaConfig

    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"Mamba with hidden_act '{hf['hidden_act']}' is not supported (only silu)")
    rank = hf.get("time_step_rank", "auto")
    return JambaConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=1,
        n_kv_heads=1,
        d_ff=1,
        max_seq_len=1 << 20,
        attn_layer_period=0,
        use_mlp=False,
        dt_norms=False,
        num_experts=1,
        top_k=1,
        d_state=hf.get("state_size", 16),
        d_conv=hf.get("conv_kernel", 4),
        expand=hf.get("expand", 2),
        dt_rank=0 if rank == "auto" else int(rank),
        conv_bias=hf.get("use_conv_bias", True),
        proj_bias=hf.get("use_bias", False),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        initializer_range=hf.get("initializer_range", 0.1),
        tie_embeddings=hf.get("tie_word_embeddings", True),
        pad_token_id=hf.get("pad_token_id") or 0,
        bos_token_id=hf.get("bos_token_id") or 0,
        eos_token_id=hf.get("eos_token_id") or 0,
    )


_EXPERT = re.compile(r"^(layers\.\d+\.feed_forward\.experts)\.(gate_up_proj|down_proj)$")


def jamba_state_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(("model.", "lm_head.")):
            raise CheckpointError(f"unexpected Jamba weight '{key}'")
        key = key.removeprefix("model.").replace(".self_attn.o_proj.", ".self_attn.out_proj.")
        m = _EXPERT.match(key)
        if m is None:
            out[key] = value
            continue
        prefix, kind = m.groups()
        for e in range(value.shape[0]):  # 5.x fused experts -> one Linear per expert
            if kind == "gate_up_proj":
                gate, up = value[e].chunk(2, dim=0)
                out[f"{prefix}.{e}.gate_proj.weight"] = gate
                out[f"{prefix}.{e}.up_proj.weight"] = up
            else:
                out[f"{prefix}.{e}.down_proj.weight"] = value[e]
    return out


def mamba_state_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = (
            key.replace("backbone.embedding.", "backbone.embeddings.")
            .replace("backbone.embeddings.", "embed_tokens.")
            .replace("backbone.norm_f.", "final_layernorm.")
        )
        new = re.sub(r"^backbone\.layers\.(\d+)\.norm\.", r"layers.\1.input_layernorm.", new)
        new = re.sub(r"^backbone\.layers\.(\d+)\.mixer\.", r"layers.\1.mamba.", new)
        if new.startswith("backbone."):
            raise CheckpointError(f"unexpected Mamba weight '{key}'")
        out[new] = value
    return out


def jamba_to_hf(model) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict in the 4.x/Hub layout, config.json) for a Jamba or a plain Mamba model."""
    cfg = model.config
    state = {k: v for k, v in model.state_dict().items()}
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)
    is_mamba = cfg.attn_layer_period == 0 and not cfg.use_mlp and not cfg.dt_norms
    if is_mamba:
        out = {}
        for key, value in state.items():
            new = re.sub(r"^layers\.(\d+)\.input_layernorm\.", r"backbone.layers.\1.norm.", key)
            new = re.sub(r"^layers\.(\d+)\.mamba\.", r"backbone.layers.\1.mixer.", new)
            new = new.replace("embed_tokens.", "backbone.embeddings.").replace("final_layernorm.", "backbone.norm_f.")
            out[new] = value
        config = {
            "architectures": ["MambaForCausalLM"],
            "model_type": "mamba",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "num_hidden_layers": cfg.n_layers,
            "state_size": cfg.d_state,
            "expand": cfg.expand,
            "intermediate_size": cfg.d_inner,
            "conv_kernel": cfg.d_conv,
            "time_step_rank": cfg.resolved_dt_rank,
            "use_bias": cfg.proj_bias,
            "use_conv_bias": cfg.conv_bias,
            "layer_norm_epsilon": cfg.norm_eps,
            "hidden_act": "silu",
            "tie_word_embeddings": cfg.tie_embeddings,
            "pad_token_id": cfg.pad_token_id,
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
        }
        return out, config
    if not (cfg.use_mlp and cfg.dt_norms) or cfg.normalize_top_k:
        raise CheckpointError(
            "only Jamba-shaped models (MLPs, Δ/B/C norms, unnormalised top-k) or plain Mamba models map onto "
            "Hugging Face checkpoints"
        )
    out = {}
    for key, value in state.items():
        key = key.replace(".self_attn.out_proj.", ".self_attn.o_proj.")
        out[key if key.startswith("lm_head.") else f"model.{key}"] = value
    config = {
        "architectures": ["JambaForCausalLM"],
        "model_type": "jamba",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        "max_position_embeddings": cfg.max_seq_len,
        "attention_dropout": cfg.attn_dropout,
        "attn_layer_period": cfg.attn_layer_period or cfg.n_layers + 1,
        "attn_layer_offset": cfg.attn_layer_offset if cfg.attn_layer_period else cfg.n_layers,
        "expert_layer_period": cfg.expert_layer_period,
        "expert_layer_offset": cfg.expert_layer_offset,
        "num_experts": cfg.num_experts,
        "num_experts_per_tok": cfg.top_k,
        "router_aux_loss_coef": cfg.router_aux_loss_coef,
        "mamba_d_state": cfg.d_state,
        "mamba_d_conv": cfg.d_conv,
        "mamba_expand": cfg.expand,
        "mamba_dt_rank": cfg.resolved_dt_rank,
        "mamba_conv_bias": cfg.conv_bias,
        "mamba_proj_bias": cfg.proj_bias,
        "use_mamba_kernels": False,
        "initializer_range": cfg.initializer_range,
        "tie_word_embeddings": cfg.tie_embeddings,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
    }
    return out, config
