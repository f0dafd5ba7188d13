"""Mixture of experts: grouped dispatch, routing rules, load-balancing loss."""

from __future__ import annotations

import math

import torch

from polyformer.layers.moe import MoE, load_balancing_loss, tokens_per_expert


def _naive(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """One token at a time: the definition."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        p = moe.router(x[t]).float().softmax(-1)
        w, e = p.topk(moe.top_k)
        if moe.normalize_top_k:
            w = w / w.sum()
        for wi, ei in zip(w, e):
            out[t] += wi * moe.experts[int(ei)](x[t : t + 1])[0]
    return out


def test_grouped_dispatch_equals_per_token_definition():
    torch.manual_seed(0)
    for normalize in (False, True):
        moe = MoE(16, 24, num_experts=5, top_k=2, normalize_top_k=normalize).double()
        x = torch.randn(3, 7, 16, dtype=torch.float64)
        y, logits = moe(x)
        assert logits.shape == (21, 5)
        assert torch.allclose(y.reshape(-1, 16), _naive(moe, x.reshape(-1, 16)), atol=1e-12)


def test_jamba_rule_does_not_renormalise():
    torch.manual_seed(0)
    moe = MoE(8, 8, num_experts=4, top_k=2)
    _, w, _ = moe.route(torch.randn(10, 8))
    assert (w.sum(-1) < 1).all()
    moe.normalize_top_k = True
    _, w, _ = moe.route(torch.randn(10, 8))
    assert torch.allclose(w.sum(-1), torch.ones(10))


def test_load_balancing_loss_values():
    E, k = 4, 2
    # perfectly balanced: each token's top-2 pair rotates over the experts, probabilities 0.5/0.5
    logits = torch.full((8, E), -1e4)
    for t in range(8):
        logits[t, t % E] = logits[t, (t + 1) % E] = 0.0
    assert math.isclose(load_balancing_loss([logits], E, k).item(), k, rel_tol=1e-5)
    assert tokens_per_expert(logits, k).tolist() == [4, 4, 4, 4]
    # collapsed: every token picks experts 0 and 1 -> E * (1 * 0.5 + 1 * 0.5) = 4 = 2x balanced
    collapsed = torch.full((8, E), -1e4)
    collapsed[:, :2] = 0.0
    assert math.isclose(load_balancing_loss([collapsed], E, k).item(), 4.0, rel_tol=1e-5)
    # padding is left out of the averages
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
    both = torch.cat([logits[:4], collapsed[4:]])
    assert math.isclose(load_balancing_loss([both], E, k, mask).item(), k, rel_tol=1e-5)
