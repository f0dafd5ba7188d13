"""Sparse mixture of experts (Shazeer et al. 2017; Switch, Fedus et al. 2021; Mixtral; Jamba).

For a token x, a bias-free router gives logits r = W_r x over E experts and, in float32,
    p = softmax(r),      (w, S) = top-k(p),      y = Σ_{e in S} w_e · Expert_e(x)
Jamba keeps the top-k probabilities as they are (they sum to less than 1); Mixtral renormalises
them to sum to 1 (``normalize_top_k=True``). Experts are SwiGLU MLPs: down(silu(gate x) ⊙ up x).

Dispatch is dropless and grouped: the (token, expert) pairs are sorted by expert, each expert runs
once on its contiguous slice, and the weighted outputs are scattered back with ``index_add_``.

Load-balancing loss (Switch Transformer eq. 4, as Hugging Face computes it for Mixtral and Jamba),
over the T tokens of all MoE layers together:
    f_{j,e} = (1/T) Σ_t [e is the j-th choice of t],    P_e = (1/T) Σ_t p_{t,e},
    L_aux = E · Σ_j Σ_e f_{j,e} P_e
It equals k when routing is perfectly balanced; models add 0.001 · L_aux to the loss (Jamba).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mlp import GLUMLP


class MoE(nn.Module):
    """``forward(x [..., d]) -> (y [..., d], router_logits [tokens, E])``."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        num_experts: int,
        top_k: int = 2,
        normalize_top_k: bool = False,
        activation: str = "swiglu",
    ):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k={top_k} must be between 1 and num_experts={num_experts}")
        self.num_experts, self.top_k, self.normalize_top_k = num_experts, top_k, normalize_top_k
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(GLUMLP(d_model, d_ff, activation, bias=False) for _ in range(num_experts))

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, d] -> (router logits [T, E], top-k weights [T, k] in x's dtype, expert ids [T, k])."""
        logits = self.router(x)
        probs = logits.float().softmax(dim=-1)
        weights, experts = probs.topk(self.top_k, dim=-1)
        if self.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights.to(x.dtype), experts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits, weights, experts = self.route(flat)
        pair_expert = experts.reshape(-1)  # [T*k], pair i belongs to token i // k
        order = torch.argsort(pair_expert, stable=True)
        token = order // self.top_k
        counts = torch.bincount(pair_expert, minlength=self.num_experts).tolist()
        grouped = flat.index_select(0, token)
        outs, start = [], 0
        for expert, count in zip(self.experts, counts):
            if count:
                outs.append(expert(grouped[start : start + count]))
            start += count
        weighted = torch.cat(outs) * weights.reshape(-1)[order, None]
        y = torch.zeros_like(flat).index_add_(0, token, weighted)
        return y.view(shape), logits


def tokens_per_expert(router_logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """How many (token, choice) pairs each expert received: [E] integer counts."""
    experts = router_logits.float().softmax(-1).topk(top_k, dim=-1).indices
    return torch.bincount(experts.reshape(-1), minlength=router_logits.shape[-1])


def load_balancing_loss(
    router_logits: list[torch.Tensor] | tuple[torch.Tensor, ...],
    num_experts: int,
    top_k: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Switch-style auxiliary loss over all MoE layers' router logits (each [batch * length, E]);
    ``attention_mask`` [batch, length] (1 = token) leaves padding out of the averages."""
    logits = torch.cat([r.float() for r in router_logits], dim=0)
    probs = logits.softmax(dim=-1)
    chosen = F.one_hot(probs.topk(top_k, dim=-1).indices, num_experts).float()  # [N, k, E]
    if attention_mask is None:
        f = chosen.mean(dim=0)  # [k, E]
        p = probs.mean(dim=0)  # [E]
    else:
        keep = attention_mask.reshape(-1).to(probs.dtype).repeat(len(router_logits))  # [N]
        f = (chosen * keep[:, None, None]).sum(0) / keep.sum()
        p = (probs * keep[:, None]).sum(0) / keep.sum()
    return num_experts * (f * p[None, :]).sum()
