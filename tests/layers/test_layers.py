import math

import pytest
import torch
import torch.nn.functional as F

from polyformer.layers import (
    GLUMLP,
    MLP,
    KVCache,
    MultiHeadAttention,
    RMSNorm,
    make_norm,
    sinusoidal_table,
)


def reference_attention(attn: MultiHeadAttention, x, context=None, causal=False, mask=None):
    """Textbook multi-head attention written out with explicit loops over heads."""
    context = x if context is None else context
    b, lq, _ = x.shape
    hd, h, hk = attn.head_dim, attn.n_heads, attn.n_kv_heads
    q = attn.q_proj(x).view(b, lq, h, hd)
    k = attn.k_proj(context).view(b, -1, hk, hd)
    v = attn.v_proj(context).view(b, -1, hk, hd)
    heads = []
    for i in range(h):
        j = i // (h // hk)  # the key/value head shared by this query head
        s = q[:, :, i] @ k[:, :, j].transpose(1, 2) / math.sqrt(hd)
        if causal:
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        heads.append(s.softmax(-1) @ v[:, :, j])
    return attn.out_proj(torch.cat(heads, -1))


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_attention_matches_reference_including_gqa(n_kv_heads):
    attn = MultiHeadAttention(32, 4, n_kv_heads).double()
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    assert torch.allclose(attn(x), reference_attention(attn, x))
    assert torch.allclose(attn(x, is_causal=True), reference_attention(attn, x, causal=True))
    assert attn.k_proj.weight.shape == (32 // 4 * n_kv_heads, 32)


def test_cross_attention_with_padding_and_cache():
    attn = MultiHeadAttention(16, 2, kv_dim=24).double()
    x, mem = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 5, 24, dtype=torch.float64)
    keep = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]
    ref = reference_attention(attn, x, mem, mask=keep)
    got = attn(x, context=mem, mask=keep[:, None])
    assert torch.allclose(got, ref)
    cache = KVCache(static=True)
    first = attn(x[:, :1], context=mem, mask=keep[:, None], cache=cache)
    again = attn(x[:, 1:2], mask=keep[:, None], cache=cache)  # memory K/V come from the cache
    assert torch.allclose(first, ref[:, :1]) and torch.allclose(again, ref[:, 1:2])


def test_fully_masked_row_gives_finite_output():
    attn = MultiHeadAttention(8, 2)
    mask = torch.zeros(1, 1, 1, 4, dtype=torch.bool)
    assert torch.isfinite(attn(torch.randn(1, 4, 8), mask=mask)).all()


def test_rmsnorm_definition_and_dtype():
    n = RMSNorm(6, eps=1e-6)
    n.weight.data = torch.arange(1.0, 7.0)
    x = torch.randn(3, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * n.weight
    assert torch.allclose(n(x), expected, atol=1e-6)
    assert n(x.bfloat16()).dtype == torch.float32  # weight is fp32 -> promotes; stat computed in fp32
    assert make_norm("layernorm", 6, 1e-5).eps == 1e-5


@pytest.mark.parametrize("name,act", [("glu", torch.sigmoid), ("geglu", F.gelu), ("swiglu", F.silu), ("reglu", F.relu)])
def test_glu_variants(name, act):
    m = GLUMLP(8, 16, name)
    x = torch.randn(4, 8)
    expected = m.down_proj(act(m.gate_proj(x)) * m.up_proj(x))
    assert torch.allclose(m(x), expected)


def test_plain_mlp():
    m = MLP(8, 16, "relu")
    x = torch.randn(4, 8)
    assert torch.allclose(m(x), m.fc2(F.relu(m.fc1(x))))
    with pytest.raises(ValueError):
        MLP(8, 16, "swiglu")


def test_sinusoidal_table_formula():
    t = sinusoidal_table(50, 16)
    pos, i = 37, 3
    assert t[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert t[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)


def test_self_attention_projections_fused_and_separate_agree(monkeypatch):
    import polyformer.layers.attention as attention_module

    torch.manual_seed(0)
    mha = attention_module.MultiHeadAttention(32, 4, n_kv_heads=2, bias=True).double()
    x = torch.randn(2, 40, 32, dtype=torch.float64)
    monkeypatch.setattr(attention_module, "_FUSE_QKV_MIN_TOKENS", 1)  # 80 tokens: one stacked product
    fused = mha._self_qkv(x)
    monkeypatch.setattr(attention_module, "_FUSE_QKV_MIN_TOKENS", 10**9)  # three products
    separate = mha._self_qkv(x)
    for a, b in zip(fused, separate):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-12)
