"""The compiled CPU selective scan against the sequential reference, with everything it fuses."""

from __future__ import annotations

import shutil

import pytest
import torch

from polyformer.layers import scan_kernel
from polyformer.layers.ssm import _KERNEL_Q, MambaMixer, causal_conv_silu, selective_scan

needs_kernel = pytest.mark.skipif(not scan_kernel.available(), reason=f"scan kernel unavailable: {scan_kernel.error()}")


def test_kernel_builds_where_a_compiler_is_present():
    if not scan_kernel.enabled() or shutil.which("c++") is None or scan_kernel.find_ninja() is None:
        pytest.skip("no compiler or ninja here, or the kernel is disabled")
    assert scan_kernel.available(), scan_kernel.error()


def _case(b, L, d, n, r, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = {
        "x": torch.randn(b, L, d, generator=g, dtype=dtype),
        "dt": torch.randn(b, L, r, generator=g, dtype=dtype),  # δ, projected to Δ by W
        "A": -torch.rand(d, n, generator=g, dtype=dtype) * 8 - 0.1,
        "B": torch.randn(b, L, n, generator=g, dtype=dtype),
        "C": torch.randn(b, L, n, generator=g, dtype=dtype),
        "h0": torch.randn(b, d, n, generator=g, dtype=dtype),
        "D": torch.randn(d, generator=g, dtype=dtype),
        "xz": torch.randn(b, L, 2 * d, generator=g, dtype=dtype),  # z is its second half: a strided view
        "bias": torch.randn(d, generator=g, dtype=dtype),
        "W": torch.randn(d, r, generator=g, dtype=dtype) * 0.5,
    }
    return {k: v.requires_grad_() for k, v in t.items()}


def _run(impl, t, fused=True, with_h0=True):
    d = t["x"].shape[-1]
    h0 = t["h0"] if with_h0 else None
    if fused:
        return selective_scan(
            t["x"], t["dt"], t["A"], t["B"], t["C"], h0, impl,
            D=t["D"], z=t["xz"][..., d:], dt_bias=t["bias"], dt_softplus=True, dt_proj_weight=t["W"],
        )  # fmt: skip
    dt = torch.nn.functional.softplus(t["dt"] @ t["W"].t())  # a plain Δ, computed outside
    return selective_scan(t["x"], dt, t["A"], t["B"], t["C"], h0, impl)


def _values_and_grads(impl, t, **kw):
    y, h = _run(impl, t, **kw)
    g = torch.Generator().manual_seed(1)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() + (
        h * torch.randn(h.shape, generator=g, dtype=h.dtype)
    ).sum()
    leaves = [v for v in t.values()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [y, h] + [torch.zeros_like(v) if gr is None else gr for v, gr in zip(leaves, grads)]


@needs_kernel
@pytest.mark.parametrize("L", [1, 37, _KERNEL_Q, 2 * _KERNEL_Q + 5])  # within, at and across checkpoints
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("with_h0", [True, False])
def test_kernel_equals_reference_float64_with_gradients(L, fused, with_h0):
    t = _case(2, L, 70, 5, 3, torch.float64)  # 70 channels: one full block of 64 and a partial one
    ref = _values_and_grads("ref", t, fused=fused, with_h0=with_h0)
    got = _values_and_grads("kernel", t, fused=fused, with_h0=with_h0)
    for name, a, b in zip(["y", "h", *t], got, ref):
        assert (a - b).abs().max() <= 1e-10 * max(1.0, b.abs().max().item()), name


@needs_kernel
def test_kernel_equals_reference_float32():
    t = _case(1, 300, 96, 16, 6, torch.float32)
    ref = _values_and_grads("ref", t)
    got = _values_and_grads("kernel", t)
    for name, a, b in zip(["y", "h", *t], got, ref):
        assert (a - b).abs().max() <= 1e-4 * max(1.0, b.abs().max().item()), name


@needs_kernel
def test_kernel_with_decays_that_underflow():
    t = _case(1, 80, 16, 4, 2, torch.float32)
    with torch.no_grad():
        t["W"].mul_(40)  # Δ A far below -88 for many entries: exp underflows
    y1, h1 = _run("ref", t)
    y2, h2 = _run("kernel", t)
    assert torch.isfinite(y2).all() and torch.allclose(y1, y2, atol=1e-4, rtol=1e-4)
    assert torch.allclose(h1, h2, atol=1e-4, rtol=1e-4)


@needs_kernel
def test_kernel_leaves_denormals_alone():
    # The kernel is compiled with -ffast-math; linking with it would flush denormals process-wide.
    assert (torch.tensor([1e-40]) * 1.0).item() != 0.0


@needs_kernel
def test_kernel_keeps_bfloat16_in_and_out():
    t = _case(1, 20, 8, 4, 2, torch.float32)
    bf = {k: v.detach().bfloat16() for k, v in t.items()}
    y, h = _run("kernel", bf)
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32


def test_auto_falls_back_to_the_chunked_scan(monkeypatch):
    t = _case(1, 30, 8, 4, 2, torch.float64)
    ref, _ = _run("ref", t)
    monkeypatch.setattr(scan_kernel, "available", lambda: False)
    y, _ = _run("auto", t)
    assert (y - ref).abs().max() < 1e-10
    with pytest.raises(RuntimeError, match="unavailable"):
        _run("kernel", t)


def test_unknown_impl_is_refused():
    t = _case(1, 4, 8, 4, 2, torch.float64)
    with pytest.raises(ValueError, match="scan impl"):
        _run("fast", t)


@needs_kernel
@pytest.mark.parametrize("activation", ["silu", "gelu"])  # silu: the gate runs in the kernel; gelu: outside
def test_mixer_kernel_equals_reference(activation):
    torch.manual_seed(0)
    mixer = MambaMixer(16, 32, d_state=4, dt_norms=True, activation=activation).double()
    ref = MambaMixer(16, 32, d_state=4, dt_norms=True, activation=activation, scan_impl="ref").double()
    ref.load_state_dict(mixer.state_dict())
    mixer.scan_impl = "kernel"
    u = torch.randn(2, 70, 16, dtype=torch.float64)
    y1, y2 = mixer(u), ref(u)
    assert (y1 - y2).abs().max() < 1e-10
    g1 = torch.autograd.grad(y1.square().sum(), list(mixer.parameters()))
    g2 = torch.autograd.grad(y2.square().sum(), list(ref.parameters()))
    for (name, _), a, b in zip(mixer.named_parameters(), g1, g2):
        assert (a - b).abs().max() < 1e-9 * max(1.0, b.abs().max().item()), name


@needs_kernel
@pytest.mark.parametrize("L", [1, 2, 70])  # shorter than, and longer than, the K-1 previous inputs
@pytest.mark.parametrize("with_prev", [False, True])
def test_conv_kernel_equals_pytorch_with_gradients(L, with_prev):
    g = torch.Generator().manual_seed(0)
    d, K = 70, 4
    xz = torch.randn(2, L, 2 * d, generator=g, dtype=torch.float64, requires_grad=True)  # x: a strided view
    prev = torch.randn(2, d, K - 1, generator=g, dtype=torch.float64, requires_grad=True) if with_prev else None
    w = torch.randn(d, 1, K, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(d, generator=g, dtype=torch.float64, requires_grad=True)
    leaves = [t for t in (xz, prev, w, bias) if t is not None]
    res = []
    for impl in ("chunked", "kernel"):
        y = causal_conv_silu(xz[..., :d], prev, w, bias, impl)
        res.append([y, *torch.autograd.grad((y * y.detach().cos()).sum(), leaves)])
    for a, b in zip(*res):
        assert (a - b).abs().max() < 1e-12


def test_conv_kernel_refuses_what_it_cannot_run():
    w = torch.randn(8, 1, 4)
    with pytest.raises(RuntimeError, match="float32/64 CPU"):
        causal_conv_silu(torch.randn(1, 5, 8, dtype=torch.bfloat16), None, w, None, "kernel")


def test_mixer_without_the_kernel_equals_reference(monkeypatch):
    monkeypatch.setattr(scan_kernel, "available", lambda: False)  # as on a machine without a compiler
    torch.manual_seed(0)
    mixer = MambaMixer(16, 32, d_state=4, dt_norms=True).double()  # scan_impl 'auto'
    ref = MambaMixer(16, 32, d_state=4, dt_norms=True, scan_impl="ref").double()
    ref.load_state_dict(mixer.state_dict())
    u = torch.randn(2, 40, 16, dtype=torch.float64)
    assert (mixer(u) - ref(u)).abs().max() < 1e-10


@needs_kernel
def test_float32_decays_within_their_stated_accuracy():
    # with x = 0 and h0 = 1 one step leaves h = exp(Δ A): Δ A swept over [-80, 0], the range the
    # kernel's inlined float exp serves (docs/jamba.md states 2.5e-7 relative)
    d = 64 * 20000
    dt = torch.linspace(0, 80, d).view(1, 1, d)
    y, h = selective_scan(
        torch.zeros(1, 1, d), dt, -torch.ones(d, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1),
        torch.ones(1, d, 1), impl="kernel",
    )  # fmt: skip
    exact = torch.exp(-dt.double()).view(-1)
    assert ((h.view(-1).double() - exact) / exact).abs().max() < 2.5e-7
