"""Selective state-space layer (Mamba; Gu & Dao 2023, arXiv 2312.00752) and its scans.

Selective scan, per channel d and state index n (A diagonal, A < 0):
    a_t = exp(Δ_{t,d} A_{d,n}),      h_t = a_t h_{t-1} + Δ_{t,d} B_{t,n} x_{t,d},      y_{t,d} = Σ_n C_{t,n} h_{t,n}
(zero-order hold for A, Euler for B, as in the paper's code). Δ, B, C depend on the input: "selective".

Three implementations, all taking an initial state h_0 and returning the final state h_L:
- ``selective_scan_ref``: the recurrence above, one step per position (the reference).
- ``selective_scan_chunked``: cut the sequence into chunks of Q positions and run all chunks at once.
  With Γ_t = Σ_{r<=t, r in chunk} Δ_r (so Π a_r = exp(A Γ_t) exactly), the state inside chunk c is
      h_t = hloc_t + exp(A Γ_t) ⊙ s_c
  where hloc is the recurrence started from zero inside the chunk (Q steps, every chunk in parallel)
  and s_c the true state entering the chunk: s_{c+1} = exp(A Γ_end) ⊙ s_c + hloc_end (one step per
  chunk). Every exponent is A times a non-negative sum, so every factor is in (0, 1]: nothing can
  overflow, unlike the cheaper form exp(S_t) cumsum(exp(-S_s) u_s). About 2Q + L/Q Python steps
  instead of L, each on [batch, L/Q, inner, state], in place; no [batch, L, inner, state] tensor is
  formed. Its backward is written by hand (``_ChunkedScan``) and recomputes states group by group.
- ``selective_scan_kernel``: the recurrence as a compiled CPU kernel (:mod:`.scan_kernel`, built on
  first use): one pass per position with the state in cache, several times faster than the chunked
  scan forward and backward. ``impl="auto"`` uses it on CPU when it builds, else the chunked scan.
All compute in float32 (float64 if given float64), whatever the input dtype, as Hugging Face does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import scan_kernel
from .norms import RMSNorm


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def selective_scan_ref(x, dt, A, B, C, h0=None):
    """x, dt: [b, L, d]; A: [d, n]; B, C: [b, L, n]; h0: [b, d, n] or None.
    Returns y [b, L, d] (input dtype) and the final state h_L [b, d, n] (compute dtype)."""
    ct = _compute_dtype(x.dtype)
    b, L, d = x.shape
    x, dt, A, B, C = x.to(ct), dt.to(ct), A.to(ct), B.to(ct), C.to(ct)
    h = torch.zeros(b, d, A.shape[1], dtype=ct, device=x.device) if h0 is None else h0.to(ct)
    ys = []
    for t in range(L):
        a = torch.exp(dt[:, t, :, None] * A)
        h = a * h + (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append(torch.matmul(h, C[:, t, :, None]).squeeze(-1))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, d)
    return y, h


def default_chunk(length: int) -> int:
    """Q keeping the number of Python steps 2Q + L/Q near its minimum (Q ~ sqrt(L/2)); a divisor of L
    is preferred when it costs at most 25% more steps, since then no padding is needed."""
    best = max(1, min(length, round(math.sqrt(length / 2))))
    cost = lambda q: 2 * q + -(-length // q)  # noqa: E731
    divisors = [q for q in range(max(1, best // 2), min(length, 2 * best) + 1) if length % q == 0]
    if divisors:
        q = min(divisors, key=lambda q: (cost(q), -q))
        if cost(q) <= 1.25 * cost(best):
            return q
    return best


def selective_scan_chunked(x, dt, A, B, C, h0=None, chunk: int | None = None):
    """Same contract as :func:`selective_scan_ref`; ``chunk`` = Q (default ~ sqrt(L/2))."""
    in_dtype = x.dtype
    ct = _compute_dtype(in_dtype)
    b, L, d = x.shape
    if L == 0:
        h = torch.zeros(b, d, A.shape[1], dtype=ct, device=x.device) if h0 is None else h0.to(ct)
        return x.new_zeros(b, 0, d), h
    q_len = min(chunk or default_chunk(L), L)
    args = [t.to(ct).contiguous() for t in (x, dt, A, B, C)]
    h0 = None if h0 is None else h0.to(ct).contiguous()
    y, h = _ChunkedScan.apply(*args, h0, q_len)
    return y.to(in_dtype), h


def _to_chunks(t: torch.Tensor, q_len: int, nc: int) -> torch.Tensor:
    """[b, nc*Q, k] -> [Q, nc*b, k], contiguous: position q of every chunk is one slice, and
    consecutive chunks (all batch rows of each) are consecutive rows."""
    b, _, k = t.shape
    return t.view(b, nc, q_len, k).permute(2, 1, 0, 3).reshape(q_len, nc * b, k)


def _from_chunks(t: torch.Tensor, b: int, L: int) -> torch.Tensor:
    """Inverse of :func:`_to_chunks`, dropping the padding: [Q, nc*b, k] -> [b, L, k]."""
    q_len, m, k = t.shape
    nc = m // b
    return t.view(q_len, nc, b, k).permute(2, 1, 0, 3).reshape(b, nc * q_len, k)[:, :L]


_GROUP_ELEMENTS = 1 << 24  # at most this many (chunk, position, channel, state) numbers are held at once
_FWD_GROUP_ELEMENTS = 1 << 25  # the forward's decays, kept per group of chunks (fewer, larger groups are faster)

# Scratch buffers reused across calls. Large fresh allocations are served by mmap and page-faulted in
# on every call (a third of a Jamba training step on CPU); the scan's temporaries never escape a call,
# so they can live here. ``clear_workspace()`` releases them.
_WORKSPACE: dict[tuple, torch.Tensor] = {}


def _scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    numel = math.prod(shape)
    key = (name, like.dtype, like.device)
    buf = _WORKSPACE.get(key)
    if buf is None or buf.numel() < numel:
        buf = _WORKSPACE[key] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buf[:numel].view(shape)


def clear_workspace() -> None:
    """Free the selective scan's scratch buffers."""
    _WORKSPACE.clear()


class _ChunkedScan(torch.autograd.Function):
    """The chunked scan with a hand-written backward.

    Forward: (1) the recurrence from zero inside every chunk, all chunks at once, in place, keeping
    only each chunk's final state hloc_end; (2) the states entering each chunk,
    s_{c+1} = exp(A Γ_end) ⊙ s_c + hloc_end; (3) the recurrence again from the true entering states,
    now with the outputs y_t = Σ_n C_t h_t. Only the entering states [b, L/Q, d, n] are saved.

    Backward, with g_t = dL/dh_t = C_t ⊗ dy_t + a_{t+1} ⊙ g_{t+1} (the adjoint recurrence, run in
    reverse): (1) the adjoint from zero inside every chunk, keeping a_first ⊙ g_first; (2) the adjoint
    G_c entering each chunk's end from the future, G_{c-1} = a_first ⊙ gloc_first + exp(A Γ_end) ⊙ G_c;
    (3) for groups of chunks, recompute the true states forward, then run the true adjoint backward
    and collect dC_t = Σ_d dy_t h_t, d(Δx)_t = Σ_n g_t B_t, dB_t = Σ_d g_t (Δx)_t and, through
    d(log a_t) = g_t ⊙ h_{t-1} ⊙ a_t, dΔ_t = Σ_n d(log a_t) A and dA = Σ_t d(log a_t) Δ_t.
    When all chunks fit in one group (``_GROUP_ELEMENTS``), the decays a_t are computed once and kept.
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, q_len):
        b, L, d = x.shape
        n = A.shape[1]
        nc = -(-L // q_len)
        pad = nc * q_len - L
        if pad:  # Δ = 0 on padding: a = 1 and no input, so the state passes through unchanged
            x, dt = F.pad(x, (0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
            B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
        dtq, uq = _to_chunks(dt, q_len, nc), _to_chunks(dt * x, q_len, nc)
        Bq, Cq = _to_chunks(B, q_len, nc), _to_chunks(C, q_len, nc)
        y = x.new_empty(q_len, nc * b, d)
        starts = x.new_empty(nc, b, d, n)
        s = x.new_zeros(b, d, n) if h0 is None else h0  # the state entering the next chunk
        # Chunks are taken in groups, in order, so that the decays of a group are computed once
        # and kept (bounded memory) while steps (1)-(3) run on it.
        n_groups = -(-nc // max(1, _FWD_GROUP_ELEMENTS // (q_len * b * d * n)))
        per_group = -(-nc // n_groups)  # balanced: no small last group paying the full loop overhead
        for c0 in range(0, nc, per_group):
            c1 = min(nc, c0 + per_group)
            rows = slice(c0 * b, c1 * b)
            k = (c1 - c0) * b
            a = _scratch("a_all", (q_len, k, d, n), x)
            torch.exp(torch.mul(dtq[:, rows, :, None], A, out=a), out=a)
            h = _scratch("h", (k, d, n), x)
            if nc > 1:
                h.zero_()
                for q in range(q_len):  # (1) each chunk from a zero state: only its final state matters
                    h.mul_(a[q]).addcmul_(uq[q, rows, :, None], Bq[q, rows, None, :])
                h_end = h.view(c1 - c0, b, d, n)
                chunk_decay = torch.exp(dtq[:, rows].sum(0)[:, :, None] * A).view(c1 - c0, b, d, n)
                for j in range(c1 - c0):  # (2) the state entering each chunk
                    starts[c0 + j] = s
                    s = torch.addcmul(h_end[j], chunk_decay[j], s)
            else:
                starts[0] = s
            h.copy_(starts[c0:c1].view(k, d, n))
            tmp = _scratch("tmp", (k, d, n), x)
            for q in range(q_len):  # (3) the true states, and the outputs
                h.mul_(a[q]).addcmul_(uq[q, rows, :, None], Bq[q, rows, None, :])
                torch.sum(torch.mul(h, Cq[q, rows, None, :], out=tmp), dim=-1, out=y[q, rows])
        ctx.save_for_backward(x, dt, A, B, C, starts)
        ctx.shape, ctx.has_h0 = (b, L, q_len, nc), h0 is not None
        return _from_chunks(y, b, L), h.view(-1, b, d, n)[-1].clone()

    @staticmethod
    def backward(ctx, gy, gh):
        x, dt, A, B, C, starts = ctx.saved_tensors
        b, L, q_len, nc = ctx.shape
        d, n = A.shape
        m = b * nc
        if gy is None:
            gy = x.new_zeros(b, L, d)
        gy = F.pad(gy, (0, 0, 0, nc * q_len - L)) if nc * q_len > L else gy
        dtq, xq = _to_chunks(dt, q_len, nc), _to_chunks(x, q_len, nc)
        uq = dtq * xq
        Bq, Cq, gyq = _to_chunks(B, q_len, nc), _to_chunks(C, q_len, nc), _to_chunks(gy.contiguous(), q_len, nc)
        group = max(1, _GROUP_ELEMENTS // ((q_len + 1) * d * n))
        a_all = None
        if m <= group:  # every decay at once when it fits
            a_all = _scratch("a_all", (q_len, m, d, n), x)
            torch.exp(torch.mul(dtq[..., None], A, out=a_all), out=a_all)
        a = _scratch("a", (m, d, n), x)

        def decay(q, sl=slice(None)):
            if a_all is not None:
                return a_all[q, sl]
            out = a[: len(range(*sl.indices(m)))]
            return torch.exp(torch.mul(dtq[q, sl, :, None], A, out=out), out=out)

        # (1) the adjoint from zero inside every chunk
        g = _scratch("g", (m, d, n), x).zero_()
        for q in range(q_len - 1, -1, -1):
            g.addcmul_(Cq[q, :, None, :], gyq[q, :, :, None]).mul_(decay(q))  # a_q ⊙ g_q: into position q-1
        into_prev = g.view(nc, b, d, n)
        # (2) the adjoint entering each chunk's end from the future
        chunk_decay = torch.exp(dtq.sum(0)[:, :, None] * A).view(nc, b, d, n)
        G = x.new_empty(nc, b, d, n)
        carry = x.new_zeros(b, d, n) if gh is None else gh.contiguous()
        for c in range(nc - 1, -1, -1):
            G[c] = carry
            carry = torch.addcmul(into_prev[c], chunk_decay[c], carry)
        gh0 = carry if ctx.has_h0 else None

        # (3) true states and adjoints, a group of chunks at a time
        gC, gu, gB = torch.empty_like(Cq), torch.empty_like(uq), torch.empty_like(Bq)
        gdt_a = torch.empty_like(dtq)
        gA_acc = _scratch("gA", (min(group, m), d, n), x).zero_()  # Σ_t d(log a_t) Δ_t, over chunks at the end
        st, Gf = starts.view(m, d, n), G.view(m, d, n)
        for g0 in range(0, m, group):
            sl = slice(g0, min(m, g0 + group))
            k = sl.stop - sl.start
            H = _scratch("H", (q_len + 1, k, d, n), x)
            H[0] = st[sl]
            for q in range(q_len):
                torch.mul(H[q], decay(q, sl), out=H[q + 1]).addcmul_(uq[q, sl, :, None], Bq[q, sl, None, :])
            g = _scratch("g", (k, d, n), x).copy_(Gf[sl])
            tmp = _scratch("tmp", (k, d, n), x)
            for q in range(q_len - 1, -1, -1):
                g.addcmul_(Cq[q, sl, None, :], gyq[q, sl, :, None])  # g_t
                torch.bmm(gyq[q, sl, None, :], H[q + 1], out=gC[q, sl, None, :])
                torch.sum(torch.mul(g, Bq[q, sl, None, :], out=tmp), dim=-1, out=gu[q, sl])
                torch.bmm(uq[q, sl, None, :], g, out=gB[q, sl, None, :])
                a_q = decay(q, sl)
                torch.mul(g, H[q], out=tmp).mul_(a_q)  # d(log a_t)
                gA_acc[:k].addcmul_(tmp, dtq[q, sl, :, None])
                torch.sum(tmp.mul_(A), dim=-1, out=gdt_a[q, sl])
                g.mul_(a_q)
        gA = gA_acc.sum(0)
        gx = _from_chunks(gu * dtq, b, L)
        gdt = _from_chunks(gu * xq + gdt_a, b, L)
        return gx, gdt, gA, _from_chunks(gB, b, L), _from_chunks(gC, b, L), gh0, None


def _use_kernel(impl: str, x: torch.Tensor, what: str, dtypes: tuple | None = None) -> bool:
    """Whether ``impl`` runs the compiled CPU kernel (:mod:`.scan_kernel`) on x: 'auto' does when x
    fits (a CPU tensor, of one of ``dtypes`` if given) and the kernel is available; 'kernel' must,
    and raises otherwise; any other impl does not."""
    if impl not in ("auto", "kernel"):
        return False
    fits = x.device.type == "cpu" and (dtypes is None or x.dtype in dtypes)
    if fits and scan_kernel.available():
        return True
    if impl == "kernel":
        need = "CPU tensors" if dtypes is None else "float32/64 CPU tensors"
        state = "available" if scan_kernel.available() else f"unavailable: {scan_kernel.error() or 'turned off'}"
        raise RuntimeError(f"the compiled {what} needs {need} (got {x.dtype} on {x.device}); the kernel is {state}")
    return False


_KERNEL_Q = 64  # the compiled backward recomputes states from those saved every _KERNEL_Q positions


class _KernelScan(torch.autograd.Function):
    """The scan through the compiled CPU kernel (:mod:`.scan_kernel`), fused with Δ's bias and
    softplus, the D skip and the silu(z) gate: same equations as :class:`_ChunkedScan` around them;
    the forward saves the states at every ``_KERNEL_Q``-th position for the backward."""

    @staticmethod
    def forward(ctx, x, dt, A, B, C, h0, D, z, dt_bias, dt_proj_weight, dt_softplus):
        At = A.t().contiguous()
        Wt = None if dt_proj_weight is None else dt_proj_weight.t().contiguous()
        save = any(ctx.needs_input_grad)
        out, h, starts = scan_kernel.load().scan_forward(
            x, dt, At, B, C, h0, D, z, dt_bias, Wt, dt_softplus, _KERNEL_Q, save
        )
        if save:
            ctx.save_for_backward(x, dt, At, B, C, D, z, dt_bias, dt_proj_weight, Wt, starts)
            ctx.has_h0, ctx.dt_softplus = h0 is not None, dt_softplus
        return out, h

    @staticmethod
    def backward(ctx, gout, gh):
        x, dt, At, B, C, D, z, dt_bias, W, Wt, starts = ctx.saved_tensors
        gout = torch.zeros_like(x) if gout is None else gout.contiguous()
        gh = None if gh is None else gh.contiguous()
        gx, graw, gAt, gB, gC, gh0, gD, gz, gbias = scan_kernel.load().scan_backward(
            x, dt, At, B, C, D, z, dt_bias, Wt, ctx.dt_softplus, starts, gout, gh, _KERNEL_Q
        )
        gW = None
        if W is not None:  # raw Δ = δ Wᵀ
            gW = graw.flatten(0, 1).t() @ dt.flatten(0, 1)
            graw = graw @ W
        return (
            gx,
            graw,
            gAt.t(),
            gB,
            gC,
            gh0 if ctx.has_h0 else None,
            gD if D is not None else None,
            gz if z is not None else None,
            gbias if dt_bias is not None else None,
            gW,
            None,
        )


def _lead_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def selective_scan_kernel(
    x, dt, A, B, C, h0=None, D=None, z=None, dt_bias=None, dt_softplus=False, dt_proj_weight=None
):
    """:func:`selective_scan` through the compiled CPU kernel, which must be available (see
    :func:`polyformer.layers.scan_kernel.available`). Computes in float32 (float64 for float64 input)
    throughout, the D skip and the gate included, and returns the output in x's dtype."""
    in_dtype = x.dtype
    ct = _compute_dtype(in_dtype)
    x, dt, A, B, C = (t.to(ct).contiguous() for t in (x, dt, A, B, C))
    h0, D, dt_bias, W = (None if t is None else t.to(ct).contiguous() for t in (h0, D, dt_bias, dt_proj_weight))
    z = None if z is None else _lead_dim_contiguous(z.to(ct))
    y, h = _KernelScan.apply(x, dt, A, B, C, h0, D, z, dt_bias, W, bool(dt_softplus))
    return y.to(in_dtype), h


SCAN_IMPLS = ("auto", "kernel", "chunked", "ref")


def selective_scan(
    x, dt, A, B, C, h0=None, impl: str = "auto", chunk: int | None = None,
    D=None, z=None, dt_bias=None, dt_softplus: bool = False, dt_proj_weight=None,
):  # fmt: skip
    """The selective scan with what surrounds it in Mamba (mamba_ssm's ``selective_scan_fn``):
        Δ = softplus(dt + dt_bias) (softplus only if ``dt_softplus``; dt_bias optional),
            where dt is replaced by dt W_Δᵀ if ``dt_proj_weight`` W_Δ [d, r] is given (dt: [b, L, r]),
        y = SelectiveScan(x; Δ, A, B, C) + D ⊙ x (if D),   out = y ⊙ silu(z) (if z).
    x, dt, z: [b, L, d]; A: [d, n]; B, C: [b, L, n]; h0: [b, d, n] or None; D, dt_bias: [d].
    Returns out [b, L, d] and the final state [b, d, n]. ``impl``: 'ref' (sequential reference),
    'chunked' (pure PyTorch), 'kernel' (compiled CPU kernel, everything fused) or 'auto' (the kernel
    for CPU tensors when it is available, else chunked)."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"scan impl must be one of {SCAN_IMPLS}, got {impl!r}")
    if _use_kernel(impl, x, "selective scan"):
        return selective_scan_kernel(x, dt, A, B, C, h0, D, z, dt_bias, dt_softplus, dt_proj_weight)
    if dt_proj_weight is not None:
        dt = F.linear(dt, dt_proj_weight.to(dt.dtype))
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    if impl == "ref":
        y, h = selective_scan_ref(x, dt, A, B, C, h0)
    else:  # 'chunked', or 'auto' without the kernel
        y, h = selective_scan_chunked(x, dt, A, B, C, h0, chunk)
    if D is not None:
        y = y + x * D.to(x.dtype)
    if z is not None:
        y = y * F.silu(z)
    return y, h


def depthwise_causal_conv(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Depthwise convolution of already left-padded inputs xp [b, L + K - 1, d] (channels last) with
    weight [d, 1, K]: y_t = bias + Σ_k w_k xp_{t+k}, giving [b, L, d]. Written as K shifted
    multiply-adds along the time axis: the same numbers as ``F.conv1d`` with ``groups=d`` on the
    transposed input, without the transposes, and on CPU a much faster backward than torch's."""
    k = weight.shape[-1]
    length = xp.shape[1] - k + 1
    w = weight[:, 0, :].t().to(xp.dtype)  # [K, d]
    y = xp[:, :length] * w[0]
    for i in range(1, k):
        y.addcmul_(xp[:, i : i + length], w[i])
    return y if bias is None else y.add_(bias.to(xp.dtype))


class _KernelConv(torch.autograd.Function):
    """silu(causal depthwise conv + bias) through the compiled CPU kernel; x [b, L, d] (channels
    contiguous), prev [b, d, K-1] or None, weight [d, 1, K], bias [d] or None."""

    @staticmethod
    def forward(ctx, x, prev, weight, bias):
        wt = weight[:, 0, :].t().contiguous()
        ctx.save_for_backward(x, prev, wt, bias)
        return scan_kernel.load().conv_forward(x, prev, wt, bias, True)

    @staticmethod
    def backward(ctx, gy):
        x, prev, wt, bias = ctx.saved_tensors
        gx, gprev, gwt, gbias = scan_kernel.load().conv_backward(x, prev, wt, bias, True, gy.contiguous())
        return gx, gprev if prev is not None else None, gwt.t().unsqueeze(1), gbias if bias is not None else None


def causal_conv_silu(x, prev, weight, bias, impl: str = "auto"):
    """silu(y) for the causal depthwise convolution y_t = bias + Σ_k w_k xp_{t+k} over
    xp = [prev; x] (prev [b, d, K-1], the last K-1 inputs of the previous call, or zeros):
    x [b, L, d] (channels last), weight [d, 1, K]. 'auto' uses the compiled CPU kernel for float32
    and float64 CPU tensors when it is available, 'kernel' requires it; otherwise (and with
    'chunked' or 'ref') the PyTorch formulation :func:`depthwise_causal_conv` runs."""
    k = weight.shape[-1] - 1
    if _use_kernel(impl, x, "convolution", (torch.float32, torch.float64)):
        x = x if x.stride(-1) == 1 else x.contiguous()
        prev = None if prev is None else prev.to(x.dtype).contiguous()
        bias = None if bias is None else bias.to(x.dtype)
        return _KernelConv.apply(x, prev, weight.to(x.dtype), bias)
    return F.silu(depthwise_causal_conv(with_previous_inputs(x, prev, k), weight, bias))


def with_previous_inputs(x, prev, k: int):
    """[prev; x] along time, [b, k+L, d] from x [b, L, d] and prev [b, d, k] (zeros if None)."""
    if prev is not None:
        return torch.cat([prev.transpose(1, 2).to(x.dtype), x], dim=1)
    return F.pad(x, (0, 0, k, 0))


@dataclass
class MambaState:
    """What a Mamba layer carries between calls: the last K-1 conv inputs [b, d_inner, K-1] and
    the SSM state [b, d_inner, d_state]."""

    conv: torch.Tensor | None = None
    ssm: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        if self.conv is not None:
            self.conv = self.conv.index_select(0, index)
            self.ssm = self.ssm.index_select(0, index)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.conv, self.ssm) if t is not None)


class MambaMixer(nn.Module):
    """The Mamba block's mixer (Gu & Dao 2023, Fig. 3):
        [x, z] = W_in u;   x = act(causal depthwise conv_K(x));   (δ, B, C) = W_x x
        Δ = softplus(W_Δ δ + b_Δ);   y = SelectiveScan(x; Δ, A, B, C) + D ⊙ x;   out = W_out (y ⊙ act(z))
    with A = -exp(A_log), A_log initialised to log(1..N) for every channel (S4D-real). ``dt_norms``
    adds Jamba's RMSNorms on δ, B and C (Lieber et al. 2024, arXiv 2403.19887).

    ``attention_mask`` [b, L] (1 = token, 0 = padding) zeroes padded inputs before and after the
    convolution, so left padding leaves no trace in the state. With a :class:`MambaState` the layer
    continues from it and updates it, for any number of new tokens."""

    def __init__(
        self,
        d_model: int,
        d_inner: int,
        d_state: int = 16,
        d_conv: int = 4,
        dt_rank: int | None = None,
        conv_bias: bool = True,
        proj_bias: bool = False,
        dt_norms: bool = False,
        norm_eps: float = 1e-6,
        activation: str = "silu",
        scan_impl: str = "auto",
    ):
        super().__init__()
        self.d_inner, self.d_state, self.d_conv = d_inner, d_state, d_conv
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=proj_bias)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, bias=conv_bias, padding=0)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=proj_bias)
        if dt_norms:
            self.dt_layernorm = RMSNorm(self.dt_rank, norm_eps)
            self.b_layernorm = RMSNorm(d_state, norm_eps)
            self.c_layernorm = RMSNorm(d_state, norm_eps)
        self.dt_norms = dt_norms
        self.act = {"silu": F.silu, "gelu": F.gelu, "relu": F.relu}[activation]
        self.scan_impl = scan_impl

    def forward(self, u, attention_mask=None, state: MambaState | None = None, chunk: int | None = None):
        b, L, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)
        keep = None if attention_mask is None else attention_mask[:, -L:, None].to(x.dtype)
        if keep is not None:
            x = x * keep
        # causal depthwise convolution over [previous K-1 inputs ; x], channels last
        k = self.d_conv - 1
        prev = state.conv if state is not None else None  # [b, d_inner, K-1] (Hugging Face's layout)
        if state is not None:  # the last K-1 inputs, for the next call
            tail = x[:, L - k :] if L >= k else with_previous_inputs(x, prev, k)[:, -k:]
            state.conv = tail.transpose(1, 2).detach().clone(memory_format=torch.contiguous_format)
        if self.act is F.silu:
            x = causal_conv_silu(x, prev, self.conv1d.weight, self.conv1d.bias, self.scan_impl)
        else:
            x = self.act(depthwise_causal_conv(with_previous_inputs(x, prev, k), self.conv1d.weight, self.conv1d.bias))
        if keep is not None:
            x = x * keep
        dt, Bm, Cm = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        if self.dt_norms:
            dt, Bm, Cm = self.dt_layernorm(dt), self.b_layernorm(Bm), self.c_layernorm(Cm)
        A = -torch.exp(self.A_log.float())
        h0 = state.ssm if state is not None else None
        gate_in_scan = self.act is F.silu
        y, h = selective_scan(
            x, dt, A, Bm, Cm, h0, self.scan_impl, chunk,
            D=self.D, z=z if gate_in_scan else None, dt_bias=self.dt_proj.bias, dt_softplus=True,
            dt_proj_weight=self.dt_proj.weight,
        )  # fmt: skip
        if state is not None:
            state.ssm = h.detach()
        return self.out_proj(y if gate_in_scan else y * self.act(z))
