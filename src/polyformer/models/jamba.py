"""Jamba (Lieber et al. 2024, arXiv 2403.19887): a hybrid of Mamba and attention layers with
mixture-of-experts MLPs; and, from the same blocks, the plain Mamba LM (Gu & Dao 2023).

Layer i mixes tokens with attention if i % attn_layer_period == attn_layer_offset, else with a
Mamba mixer (``layers/ssm.py``); its MLP is a mixture of experts (``layers/moe.py``) if
i % expert_layer_period == expert_layer_offset, else a dense SwiGLU MLP. Every layer is pre-norm:
    h = x + Mixer(RMSNorm(x)),      out = h + MLP(RMSNorm(h))
Attention is causal grouped-query attention with **no positional encoding** (the Mamba layers carry
position). Jamba-v0.1: 32 layers, attention 1 in 8 (offset 4), 16 experts top-2 every other layer,
52B parameters of which 12B are active per token; its KV cache is 1/8 of an all-attention model's.

The plain Mamba LM (``mamba-*`` presets) is the special case with no attention layer
(``attn_layer_period=0``), no MLP sublayer (``use_mlp=False``), no RMSNorms on Δ, B, C
(``dt_norms=False``) and tied embeddings.

The loss is the next-token cross-entropy plus router_aux_loss_coef · L_aux (the load-balancing loss
over all MoE layers). Generation keeps a :class:`HybridCache`: keys and values for attention layers,
conv and SSM state for Mamba layers, so a Mamba layer costs the same per new token at any length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BaseConfig, check, check_choice, check_positive_int, check_prob
from ..errors import SequenceTooLongError
from ..layers.attention import KVCache, MultiHeadAttention
from ..layers.mlp import GLUMLP
from ..layers.moe import MoE, load_balancing_loss
from ..layers.norms import RMSNorm
from ..layers.ssm import SCAN_IMPLS, MambaMixer, MambaState
from ..modeling import ModelOutput, PolyModel
from ..registry import register_family, register_model
from .transformer import LMGenerateMixin, _check_ids, lm_loss


@dataclass
class JambaConfig(BaseConfig):
    family = "jamba"

    vocab_size: int = 65536
    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    d_ff: int = 14336  # MLP and expert width
    max_seq_len: int = 262144  # nominal: no layer has positions
    # layer layout
    attn_layer_period: int = 8  # 0 = no attention layers (plain Mamba)
    attn_layer_offset: int = 4
    expert_layer_period: int = 2
    expert_layer_offset: int = 1
    num_experts: int = 16  # 1 = dense MLPs only
    top_k: int = 2
    normalize_top_k: bool = False  # Jamba: no; Mixtral: yes
    router_aux_loss_coef: float = 0.001
    use_mlp: bool = True  # False: Mamba blocks without an MLP sublayer (the Mamba LM)
    # Mamba mixer
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int = 0  # 0 = ceil(d_model / 16)
    dt_norms: bool = True  # Jamba's RMSNorms on Δ, B, C
    conv_bias: bool = True
    proj_bias: bool = False
    scan_impl: str = "auto"  # 'kernel' (compiled CPU), 'chunked', 'ref' (sequential); auto: kernel if it builds
    scan_chunk: int = 0  # 0 = about sqrt(L/2)
    # shared
    norm_eps: float = 1e-6
    attn_dropout: float = 0.0
    initializer_range: float = 0.02
    tie_embeddings: bool = False
    label_smoothing: float = 0.0
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        for f in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_seq_len"):
            check_positive_int(f, getattr(self, f))
        for f in ("d_state", "d_conv", "expand", "num_experts", "top_k", "expert_layer_period"):
            check_positive_int(f, getattr(self, f))
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        check(
            self.n_heads % self.n_kv_heads == 0, "n_kv_heads", self.n_kv_heads, f"a divisor of n_heads={self.n_heads}"
        )
        check(self.attn_layer_period >= 0, "attn_layer_period", self.attn_layer_period, ">= 0 (0 = no attention)")
        if self.attn_layer_period:
            check(
                0 <= self.attn_layer_offset < self.attn_layer_period,
                "attn_layer_offset",
                self.attn_layer_offset,
                f"in [0, attn_layer_period={self.attn_layer_period})",
            )
        check(
            0 <= self.expert_layer_offset < self.expert_layer_period,
            "expert_layer_offset",
            self.expert_layer_offset,
            f"in [0, expert_layer_period={self.expert_layer_period})",
        )
        check(self.top_k <= self.num_experts, "top_k", self.top_k, f"at most num_experts={self.num_experts}")
        check(self.dt_rank >= 0, "dt_rank", self.dt_rank, ">= 0 (0 = ceil(d_model / 16))")
        check(self.scan_chunk >= 0, "scan_chunk", self.scan_chunk, ">= 0 (0 = automatic)")
        check_choice("scan_impl", self.scan_impl, SCAN_IMPLS)
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")
        check(self.router_aux_loss_coef >= 0, "router_aux_loss_coef", self.router_aux_loss_coef, ">= 0")
        check_prob("attn_dropout", self.attn_dropout)
        check_prob("label_smoothing", self.label_smoothing)

    @property
    def layer_types(self) -> list[str]:
        p, o = self.attn_layer_period, self.attn_layer_offset
        return ["attention" if p and i % p == o else "mamba" for i in range(self.n_layers)]

    @property
    def layer_experts(self) -> list[int]:
        """Experts per layer's MLP: num_experts for MoE layers, 1 for dense MLPs, 0 for none."""
        if not self.use_mlp:
            return [0] * self.n_layers
        p, o = self.expert_layer_period, self.expert_layer_offset
        return [self.num_experts if i % p == o else 1 for i in range(self.n_layers)]

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        return self.dt_rank or math.ceil(self.d_model / 16)


class HybridCache:
    """Decoding state of every layer: a :class:`KVCache` for attention layers, a
    :class:`MambaState` (conv inputs and SSM state) for Mamba layers."""

    def __init__(self, layer_types: list[str]):
        self.layers = [KVCache() if t == "attention" else MambaState() for t in layer_types]
        self.length = 0  # tokens seen
        self.pad_mask: torch.Tensor | None = None  # [B, length] True at padding, for attention

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(index)
        if self.pad_mask is not None:
            self.pad_mask = self.pad_mask.index_select(0, index)

    def nbytes(self) -> dict[str, int]:
        """Bytes held, split into attention KV and Mamba state."""
        kv = sum(
            c.k.numel() * c.k.element_size() * 2 for c in self.layers if isinstance(c, KVCache) and c.k is not None
        )
        ssm = sum(c.nbytes() for c in self.layers if isinstance(c, MambaState))
        return {"kv": kv, "mamba": ssm}


class JambaLayer(nn.Module):
    def __init__(self, cfg: JambaConfig, kind: str, experts: int):
        super().__init__()
        self.kind = kind
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        if kind == "attention":
            self.self_attn = MultiHeadAttention(
                cfg.d_model, cfg.n_heads, cfg.n_kv_heads, bias=False, dropout=cfg.attn_dropout
            )
        else:
            self.mamba = MambaMixer(
                cfg.d_model,
                cfg.d_inner,
                cfg.d_state,
                cfg.d_conv,
                cfg.resolved_dt_rank,
                conv_bias=cfg.conv_bias,
                proj_bias=cfg.proj_bias,
                dt_norms=cfg.dt_norms,
                norm_eps=cfg.norm_eps,
                scan_impl=cfg.scan_impl,
            )
        self.moe = experts > 1
        if experts:
            self.pre_ff_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
            if self.moe:
                self.feed_forward = MoE(cfg.d_model, cfg.d_ff, experts, cfg.top_k, cfg.normalize_top_k)
            else:
                self.feed_forward = GLUMLP(cfg.d_model, cfg.d_ff, "swiglu", bias=False)
        self.chunk = cfg.scan_chunk or None

    def forward(self, x, token_mask=None, attn_mask=None, cache=None):
        h = self.input_layernorm(x)
        if self.kind == "attention":
            h = self.self_attn(h, mask=attn_mask, is_causal=True, cache=cache)
        else:
            h = self.mamba(h, attention_mask=token_mask, state=cache, chunk=self.chunk)
        x = x + h
        router_logits = None
        if hasattr(self, "feed_forward"):
            h = self.pre_ff_layernorm(x)
            if self.moe:
                h, router_logits = self.feed_forward(h)
            else:
                h = self.feed_forward(h)
            x = x + h
        return x, router_logits


class JambaLM(LMGenerateMixin, PolyModel):
    """Causal LM: ``model(input_ids, labels=None, attention_mask=None, cache=None)``; labels are
    shifted inside. ``output.aux_loss`` is the load-balancing loss (None without MoE layers)."""

    no_weight_decay = ("A_log", "D")  # the SSM's decay rates and skip, as in Mamba: never decayed

    def __init__(self, config: JambaConfig):
        super().__init__()
        self.config = cfg = config
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(
            JambaLayer(cfg, kind, experts) for kind, experts in zip(cfg.layer_types, cfg.layer_experts)
        )
        self.final_layernorm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight

    def _init_weights(self) -> None:
        """Linear and embedding weights ~ N(0, initializer_range), zero biases (as Jamba); Mamba's
        Δ projection as in Mamba: weights U(±dt_rank^-1/2), bias = softplus^-1 of Δ drawn
        log-uniformly in [0.001, 0.1]; A_log = log(1..N) and D = 1 from the mixer itself."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MambaMixer):
                nn.init.uniform_(m.dt_proj.weight, -(m.dt_rank**-0.5), m.dt_rank**-0.5)
                dt = torch.exp(torch.rand(m.d_inner) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
                dt = dt.clamp(min=1e-4)
                with torch.no_grad():
                    m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def new_cache(self) -> HybridCache:
        return HybridCache(self.config.layer_types)

    def forward(
        self,
        input_ids,
        labels=None,
        attention_mask=None,
        cache: HybridCache | None = None,
        shift_labels: bool = True,
    ) -> ModelOutput:
        cfg = self.config
        _check_ids(input_ids, "input_ids", None, cfg.vocab_size)
        offset = cache.length if cache is not None else 0
        if offset + input_ids.shape[1] > cfg.max_seq_len:
            raise SequenceTooLongError(
                f"{offset} cached + {input_ids.shape[1]} new tokens exceed the model's max_seq_len={cfg.max_seq_len}"
            )
        # attention layers: key padding (kept in the cache across calls); Mamba layers: token mask
        attn_mask = None
        if attention_mask is not None:
            pad = attention_mask == 0
            if cache is not None:
                prev = cache.pad_mask
                if prev is None and offset:
                    prev = torch.zeros(pad.shape[0], offset, dtype=torch.bool, device=pad.device)
                cache.pad_mask = pad if prev is None else torch.cat([prev, pad], 1)
                pad = cache.pad_mask
            attn_mask = (~pad)[:, None, None, :]
        elif cache is not None and cache.pad_mask is not None:
            cache.pad_mask = F.pad(cache.pad_mask, (0, input_ids.shape[1]), value=False)
            attn_mask = (~cache.pad_mask)[:, None, None, :]
        x = self.embed_tokens(input_ids)
        router_logits = []
        for i, layer in enumerate(self.layers):
            x, r = layer(x, attention_mask, attn_mask, None if cache is None else cache.layers[i])
            if r is not None:
                router_logits.append(r)
        if cache is not None:
            cache.length += input_ids.shape[1]
        logits = self.lm_head(self.final_layernorm(x))
        aux = None
        if router_logits:
            aux = load_balancing_loss(router_logits, cfg.num_experts, cfg.top_k, attention_mask)
        loss = lm_loss(logits, labels, attention_mask, shift_labels, cfg.label_smoothing)
        if loss is not None and aux is not None and cfg.router_aux_loss_coef:
            loss = loss + cfg.router_aux_loss_coef * aux
        return ModelOutput(logits=logits, loss=loss, cache=cache, aux_loss=aux)

    def active_parameters(self) -> int:
        """Parameters used per token: all, except that an MoE layer counts only top_k of its experts."""
        total = self.num_parameters()
        for layer in self.layers:
            if getattr(layer, "moe", False):
                per_expert = sum(p.numel() for p in layer.feed_forward.experts[0].parameters())
                total -= (layer.feed_forward.num_experts - self.config.top_k) * per_expert
        return total


register_family("jamba", JambaConfig, JambaLM)

register_model("jamba-v0.1", "jamba", "AI21 Jamba-v0.1 shape: 52B total / 12B active, 256K context (count on meta)")
register_model(
    "jamba-small",
    "jamba",
    "CPU-sized Jamba: width 256, 8 layers (attention at 4), 4 experts (width 512) top-2 every 2nd layer",
    vocab_size=256,
    d_model=256,
    n_layers=8,
    n_heads=8,
    n_kv_heads=2,
    d_ff=512,
    num_experts=4,
    max_seq_len=65536,
)
register_model(
    "jamba-tiny",
    "jamba",
    "tiny Jamba for tests and demos: width 64, 4 layers (attention at 2), 4 experts top-2",
    vocab_size=256,
    d_model=64,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    d_ff=128,
    attn_layer_period=4,
    attn_layer_offset=2,
    num_experts=4,
    max_seq_len=16384,
)
_MAMBA = dict(  # initializer_range 0.1 as Hugging Face's MambaConfig: 0.02 leaves narrow Mamba LMs stuck
    initializer_range=0.1,
    attn_layer_period=0,
    use_mlp=False,
    dt_norms=False,
    num_experts=1,
    top_k=1,
    norm_eps=1e-5,
    tie_embeddings=True,
    max_seq_len=1 << 20,
    bos_token_id=0,
    eos_token_id=0,
)
register_model(
    "mamba-130m",
    "jamba",
    "Mamba LM, the state-spaces/mamba-130m shape",
    **_MAMBA,
    vocab_size=50280,
    d_model=768,
    n_layers=24,
    n_heads=1,
    n_kv_heads=1,
    d_ff=1,
)
register_model(
    "mamba-small",
    "jamba",
    "CPU-sized Mamba LM: width 256, 8 layers",
    **_MAMBA,
    vocab_size=256,
    d_model=256,
    n_layers=8,
    n_heads=1,
    n_kv_heads=1,
    d_ff=1,
)
register_model(
    "mamba-tiny",
    "jamba",
    "tiny Mamba LM for tests: width 64, 2 layers",
    **_MAMBA,
    vocab_size=256,
    d_model=64,
    n_layers=2,
    n_heads=1,
    n_kv_heads=1,
    d_ff=1,
)
