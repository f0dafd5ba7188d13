"""Long causal convolution by FFT (the core of Hyena; Poli et al. 2023, arXiv 2302.10866).

For a signal u and a filter h, both of length L per channel, the causal convolution
    y_t = Σ_{s=0}^{t} h_{t-s} u_s,        t = 0 .. L-1
equals the first L outputs of the circular convolution of both zero-padded to n >= 2L - 1, which the
real FFT computes in O(n log n):   y = irfft(rfft(u, n) · rfft(h, n), n)[:L].
``fft_size`` picks the smallest n >= 2L - 1 whose only prime factors are 2, 3 and 5 (fast for
pocketfft, and much smaller than the next power of two for many L).

The FFT always runs in float32 (float64 inputs stay float64): torch has no bfloat16 FFT on CPU and
half precision FFTs lose the small filter taps; inputs are upcast and the result cast back.
``causal_conv_direct`` is the O(L^2) definition, for tests.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=256)
def fft_size(length: int) -> int:
    """Smallest 5-smooth integer >= 2 * length - 1 (and >= 2)."""
    target = max(2, 2 * length - 1)
    best = 1 << (target - 1).bit_length()  # a power of two always qualifies
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            n = p35
            while n < target:
                n *= 2
            best = min(best, n)
            p35 *= 3
        p5 *= 5
    return best


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def filter_spectrum(h: torch.Tensor, length: int) -> torch.Tensor:
    """rfft of a filter [..., L_h] for signals of ``length``; compute once, reuse for every input."""
    return torch.fft.rfft(h.to(_compute_dtype(h.dtype)), n=fft_size(length))


def fft_causal_conv(
    u: torch.Tensor, h: torch.Tensor | None = None, h_f: torch.Tensor | None = None, D: torch.Tensor | None = None
) -> torch.Tensor:
    """Causal convolution of u [..., L] with h [..., L_h] (broadcast over leading dims; a filter
    shorter than L is zero beyond its end), plus the skip term u * D if given. Pass ``h_f`` (from
    :func:`filter_spectrum`) instead of ``h`` to reuse a filter's FFT."""
    length = u.shape[-1]
    n = fft_size(length)
    ct = _compute_dtype(u.dtype)
    if h_f is None:
        if h is None:
            raise ValueError("pass the filter h or its spectrum h_f")
        h_f = torch.fft.rfft(h.to(ct), n=n)
    elif h_f.shape[-1] != n // 2 + 1:
        raise ValueError(f"filter spectrum has {h_f.shape[-1]} bins, a length-{length} signal needs {n // 2 + 1}")
    y = torch.fft.irfft(torch.fft.rfft(u.to(ct), n=n) * h_f, n=n)[..., :length]
    if D is not None:
        y = y + u.to(ct) * D.to(ct)[..., None]
    return y.to(u.dtype)


def causal_conv_direct(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The definition, O(L^2): y_t = Σ_{s<=t} h_{t-s} u_s (reference for tests)."""
    length = u.shape[-1]
    h = h[..., :length]
    if h.shape[-1] < length:
        h = torch.nn.functional.pad(h, (0, length - h.shape[-1]))
    idx = torch.arange(length)
    lag = idx[:, None] - idx[None, :]  # [t, s]
    toeplitz = torch.where(lag >= 0, h[..., lag.clamp(min=0)], torch.zeros((), dtype=h.dtype))
    return (toeplitz * u[..., None, :]).sum(-1)
