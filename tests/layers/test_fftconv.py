"""FFT long convolution against the direct definition."""

from __future__ import annotations

import pytest
import torch

from polyformer.layers.fftconv import causal_conv_direct, fft_causal_conv, fft_size, filter_spectrum


def test_fft_size_is_5_smooth_and_large_enough():
    for length in (1, 2, 3, 7, 100, 1000, 1024, 4097, 65536):
        n = fft_size(length)
        assert n >= 2 * length - 1
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1
    assert fft_size(1000) == 2000 and fft_size(1025) == 2160  # not the next powers of two (2048, 4096)


@pytest.mark.parametrize("length", [1, 5, 64, 333])
def test_fft_equals_direct(length):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, length, dtype=torch.float64, generator=g)
    h = torch.randn(3, length, dtype=torch.float64, generator=g)
    D = torch.randn(3, dtype=torch.float64, generator=g)
    ref = causal_conv_direct(u, h) + u * D[:, None]
    assert (fft_causal_conv(u, h, D=D) - ref).abs().max() < 1e-10
    y32 = fft_causal_conv(u.float(), h.float(), D=D.float())
    assert y32.dtype == torch.float32
    assert ((y32.double() - ref).abs().max() / ref.abs().max()) < 1e-4
    # reusing the filter's spectrum gives the same result
    assert torch.equal(fft_causal_conv(u, h_f=filter_spectrum(h, length), D=D), fft_causal_conv(u, h, D=D))


def test_bf16_is_upcast_and_short_filters_are_zero_padded():
    u = torch.randn(4, 50)
    h = torch.randn(4, 7)
    ref = causal_conv_direct(u, h)
    y = fft_causal_conv(u.bfloat16(), h)
    assert y.dtype == torch.bfloat16 and (y.float() - ref).abs().max() < 0.1
    assert (fft_causal_conv(u, h) - ref).abs().max() < 1e-4


def test_causal_by_gradient():
    u = torch.randn(1, 2, 40, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 40, dtype=torch.float64)
    y = fft_causal_conv(u, h)
    (g,) = torch.autograd.grad(y[..., 17].sum(), u)
    assert g[..., 18:].abs().max() < 1e-12 and g[..., :18].abs().max() > 0
