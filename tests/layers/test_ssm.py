"""Selective scan: the chunked fast path against the sequential reference; the Mamba mixer's state."""

from __future__ import annotations

import pytest
import torch

from polyformer.layers.ssm import MambaMixer, MambaState, default_chunk, selective_scan_chunked, selective_scan_ref


def _inputs(b, L, d, n, dtype, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, d, generator=g, dtype=dtype)
    dt = torch.nn.functional.softplus(torch.randn(b, L, d, generator=g, dtype=dtype))
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 8 - 0.1  # fast and slow decays
    B = torch.randn(b, L, n, generator=g, dtype=dtype)
    C = torch.randn(b, L, n, generator=g, dtype=dtype)
    h0 = torch.randn(b, d, n, generator=g, dtype=dtype)
    out = [x, dt, A, B, C, h0]
    if requires_grad:
        out = [t.requires_grad_() for t in out]
    return out


@pytest.mark.parametrize("chunk", [1, 3, 8, 37, 64])
@pytest.mark.parametrize("with_h0", [False, True])
def test_chunked_equals_reference_float64_with_gradients(chunk, with_h0):
    x, dt, A, B, C, h0 = _inputs(2, 37, 5, 4, torch.float64, requires_grad=True)
    h0 = h0 if with_h0 else None
    y1, s1 = selective_scan_ref(x, dt, A, B, C, h0)
    y2, s2 = selective_scan_chunked(x, dt, A, B, C, h0, chunk)
    assert (y1 - y2).abs().max() < 1e-10 and (s1 - s2).abs().max() < 1e-10
    w_y, w_s = torch.randn_like(y1), torch.randn_like(s1)
    leaves = [t for t in (x, dt, A, B, C, h0) if t is not None]
    g1 = torch.autograd.grad((y1 * w_y).sum() + (s1 * w_s).sum(), leaves)
    g2 = torch.autograd.grad((y2 * w_y).sum() + (s2 * w_s).sum(), leaves)
    for a, b in zip(g1, g2):
        assert (a - b).abs().max() < 1e-10


def test_chunked_equals_reference_float32():
    x, dt, A, B, C, h0 = _inputs(2, 300, 16, 8, torch.float32, requires_grad=True)
    y1, s1 = selective_scan_ref(x, dt, A, B, C, h0)
    y2, s2 = selective_scan_chunked(x, dt, A, B, C, h0)  # default chunk: 12 positions, 25 chunks
    assert default_chunk(300) == 12
    assert (y1 - y2).abs().max() < 1e-4 and (s1 - s2).abs().max() < 1e-4
    g1 = torch.autograd.grad(y1.square().sum(), (x, dt, A, B, C, h0))
    g2 = torch.autograd.grad(y2.square().sum(), (x, dt, A, B, C, h0))
    for a, b in zip(g1, g2):
        assert ((a - b).abs().max() / b.abs().max().clamp_min(1)) < 1e-4


def test_scan_splits_at_any_point_with_the_state():
    x, dt, A, B, C, h0 = _inputs(1, 40, 6, 4, torch.float64)
    full, s_full = selective_scan_chunked(x, dt, A, B, C, h0, 7)
    y_a, s_a = selective_scan_chunked(x[:, :13], dt[:, :13], A, B[:, :13], C[:, :13], h0, 5)
    y_b, s_b = selective_scan_ref(x[:, 13:], dt[:, 13:], A, B[:, 13:], C[:, 13:], s_a)
    assert torch.allclose(torch.cat([y_a, y_b], 1), full, atol=1e-12) and torch.allclose(s_b, s_full, atol=1e-12)


def test_large_decays_do_not_overflow():
    x, dt, A, B, C, _ = _inputs(1, 64, 4, 4, torch.float32)
    dt = dt * 50  # exp(Δ A) underflows to 0 for some channels: the chunked form must stay finite
    y1, _ = selective_scan_ref(x, dt, A, B, C)
    y2, _ = selective_scan_chunked(x, dt, A, B, C, chunk=32)
    assert torch.isfinite(y2).all() and torch.allclose(y1, y2, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dt_norms", [False, True])
def test_mixer_with_state_continues_exactly(dt_norms):
    torch.manual_seed(0)
    mixer = MambaMixer(16, 32, d_state=4, d_conv=4, dt_norms=dt_norms).double()
    u = torch.randn(2, 23, 16, dtype=torch.float64)
    full = mixer(u)
    state = MambaState()
    pieces = [mixer(u[:, a:b], state=state) for a, b in ((0, 2), (2, 3), (3, 11), (11, 23))]
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-12)
    assert state.conv.shape == (2, 32, 3) and state.ssm.shape == (2, 32, 4)
    ref = MambaMixer(16, 32, d_state=4, d_conv=4, dt_norms=dt_norms, scan_impl="ref").double()
    ref.load_state_dict(mixer.state_dict())
    assert torch.allclose(ref(u), full, atol=1e-12)


def test_mixer_left_padding_leaves_no_trace():
    torch.manual_seed(0)
    mixer = MambaMixer(8, 16, d_state=4)
    u = torch.randn(1, 10, 8)
    padded = torch.cat([torch.randn(1, 3, 8), u], 1)
    mask = torch.tensor([[0, 0, 0] + [1] * 10])
    assert torch.allclose(mixer(padded, attention_mask=mask)[:, 3:], mixer(u), atol=1e-5)


def test_forward_and_backward_in_several_groups_of_chunks(monkeypatch):
    import polyformer.layers.ssm as ssm

    x, dt, A, B, C, h0 = _inputs(2, 45, 5, 4, torch.float64, requires_grad=True)
    y1, s1 = selective_scan_ref(x, dt, A, B, C, h0)
    g1 = torch.autograd.grad(y1.square().sum() + s1.sum(), (x, dt, A, B, C, h0))
    monkeypatch.setattr(ssm, "_GROUP_ELEMENTS", 3 * 6 * 5 * 4)  # backward: 3 of the 18 chunk rows per group
    monkeypatch.setattr(ssm, "_FWD_GROUP_ELEMENTS", 5 * 2 * 2 * 5 * 4)  # forward: 2 chunks (of 9) per group
    y2, s2 = selective_scan_chunked(x, dt, A, B, C, h0, chunk=5)
    g2 = torch.autograd.grad(y2.square().sum() + s2.sum(), (x, dt, A, B, C, h0))
    for a, b in zip(g1, g2):
        assert (a - b).abs().max() < 1e-10


def test_depthwise_causal_conv_equals_conv1d():
    from polyformer.layers.ssm import depthwise_causal_conv

    xt = torch.randn(2, 6, 13, dtype=torch.float64)
    w, b = torch.randn(6, 1, 4, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = torch.nn.functional.conv1d(xt, w, b, groups=6)
    assert torch.allclose(depthwise_causal_conv(xt.transpose(1, 2), w, b), ref.transpose(1, 2), atol=1e-12)
