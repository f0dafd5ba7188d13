"""Multi-head attention on ``torch.nn.functional.scaled_dot_product_attention``.

Scaled dot-product attention (Vaswani et al. 2017, eq. 1) per head h:
    head_h = softmax(Q_h K_h^T / sqrt(d_k) + M) V_h,     out = W_o [head_1; ...; head_H]
with Q = x W_q, K = c W_k, V = c W_v, where c = x (self-attention) or the encoder memory
(cross-attention), and M is 0 where attending is allowed and -inf elsewhere (causal and/or padding).

Grouped-query attention (Ainslie et al. 2023): ``n_kv_heads`` key/value heads, each shared by
``n_heads / n_kv_heads`` query heads (``n_kv_heads == 1`` is multi-query attention).

Incremental decoding keeps the projected keys and values of earlier positions in a
:class:`KVCache`, so each new token costs O(T d) instead of recomputing the prefix. With a
non-empty cache, the causal mask is aligned to the bottom right: query i of a chunk of length Lq
sits at absolute position P + i and sees keys 0 .. P + i (P = cached length).

Mask convention: boolean, ``True`` = may attend, broadcastable to [batch, heads, Lq, Lk].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of one attention layer, each [batch, n_kv_heads, length, head_dim]."""

    def __init__(self, static: bool = False) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.static = static  # True for cross-attention: filled once from the encoder memory

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search)."""
        if self.k is not None:
            self.k = self.k.index_select(0, index)
            self.v = self.v.index_select(0, index)


def causal_mask(q_len: int, k_len: int, device=None) -> torch.Tensor:
    """[q_len, k_len] bool, bottom-right aligned: query i sees keys j <= (k_len - q_len) + i."""
    past = k_len - q_len
    i = torch.arange(q_len, device=device).unsqueeze(1)
    j = torch.arange(k_len, device=device).unsqueeze(0)
    return j <= i + past


_FUSE_QKV_MIN_TOKENS = 64  # below this many tokens per call, q/k/v are three separate projections


class MultiHeadAttention(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        kv_dim: int | None = None,
    ):
        super().__init__()
        n_kv_heads = n_kv_heads or n_heads
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be divisible by n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        kv_dim = kv_dim or d_model
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(kv_dim, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(kv_dim, n_kv_heads * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        self.dropout = dropout

    def _self_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of self-attention, split into heads. For many tokens one matrix
        multiply with the three weight matrices stacked (faster on CPU); for a few (decoding steps)
        three, since stacking copies the weights, which then costs as much as the products."""
        if x.shape[0] * x.shape[1] < _FUSE_QKV_MIN_TOKENS:
            return (
                self._split(self.q_proj(x), self.n_heads),
                self._split(self.k_proj(x), self.n_kv_heads),
                self._split(self.v_proj(x), self.n_kv_heads),
            )
        w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        bias = None
        if self.q_proj.bias is not None:
            bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        nq, nkv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        q, k, v = F.linear(x, w, bias).split([nq, nkv, nkv], dim=-1)
        return self._split(q, self.n_heads), self._split(k, self.n_kv_heads), self._split(v, self.n_kv_heads)

    def _split(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, n, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x: [B, Lq, d]; context: [B, Lk, kv_dim] for cross-attention (None = self-attention).

        For cross-attention with a cache, the memory's keys/values are computed on the first call
        and reused afterwards (``context`` may then be None).
        """
        b, lq, _ = x.shape
        cross = context is not None or (cache is not None and cache.static)
        if cross:
            q = self._split(self.q_proj(x), self.n_heads)
            if cache is not None and cache.k is not None:
                k, v = cache.k, cache.v
            else:
                k = self._split(self.k_proj(context), self.n_kv_heads)
                v = self._split(self.v_proj(context), self.n_kv_heads)
                if cache is not None:
                    cache.static = True
                    cache.append(k, v)
        else:
            q, k, v = self._self_qkv(x)
            if cache is not None:
                k, v = cache.append(k, v)
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)

        lk = k.shape[2]
        sdpa_causal = False
        if is_causal and not cross:
            if mask is None and lk == lq:
                sdpa_causal = True  # fast path: top-left == bottom-right when lengths agree
            elif lq > 1 or mask is not None:
                cm = causal_mask(lq, lk, device=x.device)
                mask = cm if mask is None else (mask & cm)
        if mask is not None:
            # A row with nothing to attend to (e.g. a padded query) would give NaN; let it attend
            # everywhere instead. Its output is discarded by the caller's padding handling.
            mask = mask | ~mask.any(dim=-1, keepdim=True)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=sdpa_causal
        )
        out = out.transpose(1, 2).reshape(b, lq, self.n_heads * self.head_dim)
        return self.out_proj(out)


def padding_to_attn_mask(padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """[B, Lk] bool with True at padding -> [B, 1, 1, Lk] bool with True = may attend."""
    if padding_mask is None:
        return None
    return (~padding_mask)[:, None, None, :]
