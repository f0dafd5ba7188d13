"""The Hyena operator (Poli et al. 2023, "Hyena Hierarchy", arXiv 2302.10866).

For an input u [B, L, d] and order N:
    (x_0, ..., x_{N-1}, v) = split(ShortConv_3(W_in u))        (causal depthwise conv, kernel 3)
    z^1 = v;   z^{n+1} = h^n * (x_{N-n} ⊙ z^n) + D^n ⊙ (x_{N-n} ⊙ z^n)    n = 1 .. N-1
    y = W_out (x_0 ⊙ z^N)
where * is a causal long convolution computed by FFT (``layers/fftconv.py``) and each h^n is an
implicit filter: a function of the lag k, not a table,
    h_k = window(k) ⊙ FFN(PE(k)),   FFN = Linear, sin, (Linear, sin)^m, Linear   (sine activations)
    PE(k) = [t_k, cos(2π f_j k / l_max), -sin(2π f_j k / l_max)]_j,    t_k = k / (l_max - 1)
    window(k) = exp(-|α_c| t_k) + shift,   α_c spread per channel from slow to fast decay.

Parameter names follow HazyResearch/safari's ``HyenaOperator`` (in_proj, short_filter, filter_fn.*,
out_proj) so its state dicts load (``polyformer.interop.from_safari``). Deliberate differences from
safari, each switchable back for checkpoint compatibility:
1. Inputs longer than ``l_max``: safari silently truncates them. Here the filter is generated for the
   needed length (the formulas above hold for any lag) when the positional features are computed
   (``trainable_pos=False``, the default); a trained positional table cannot be extended, so then a
   longer input is an error.
2. Sine frequencies: safari appends one ``Sin`` module several times, so all sine layers share one
   frequency vector. Here each has its own (``shared_sin=True`` restores the sharing).
3. Positional features: safari's f_j = linspace(1e-4, bands - 1, bands) makes emb_dim=3 (its default)
   degenerate, f = [1e-4]: the cos/sin pair is constant. Here f_j = 1 .. bands, so every band turns
   (``pos_freqs="safari"`` restores the original).
safari's own order convention is kept: order N applies N - 1 long convolutions (safari#9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SequenceTooLongError
from .fftconv import fft_causal_conv, filter_spectrum


class Sin(nn.Module):
    """sin(freq ⊙ x), freq trainable per feature, initialised to w."""

    def __init__(self, dim: int, w: float = 1.0, train_freq: bool = True):
        super().__init__()
        init = w * torch.ones(1, dim)
        if train_freq:
            self.freq = nn.Parameter(init)
        else:
            self.register_buffer("freq", init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class PositionalEmbedding(nn.Module):
    """PE(k) for lags k = 0 .. L-1: [t_k, Re exp(-i f w_k), Im exp(-i f w_k)], w_k = 2π k / l_max.

    ``trainable=True`` stores the table for l_max lags as a parameter ``z`` (safari); otherwise the
    features are computed for any length on demand."""

    def __init__(self, emb_dim: int, l_max: int, trainable: bool = False, freqs: str = "linear"):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (t plus cos/sin pairs), got {emb_dim}")
        self.emb_dim, self.l_max, self.trainable = emb_dim, l_max, trainable
        bands = (emb_dim - 1) // 2
        f = torch.linspace(1e-4, bands - 1, bands) if freqs == "safari" else torch.arange(1, bands + 1).float()
        self.register_buffer("f", f, persistent=False)
        if trainable:
            self.z = nn.Parameter(self.features(l_max))
        self.register_buffer("t", self.lags(l_max), persistent=trainable)  # safari keeps t in its state dict

    def lags(self, length: int) -> torch.Tensor:
        """t_k = k / (l_max - 1), [1, length, 1]."""
        k = torch.arange(length, dtype=self.f.dtype, device=self.f.device)
        return (k / max(self.l_max - 1, 1))[None, :, None]

    def features(self, length: int) -> torch.Tensor:
        k = torch.arange(length, dtype=self.f.dtype, device=self.f.device)[None, :, None]
        angle = self.f * (2 * math.pi * k / self.l_max)  # [1, L, bands]
        return torch.cat([self.lags(length), torch.cos(angle), -torch.sin(angle)], dim=-1)

    def forward(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [1, L, emb_dim], t [1, L, 1])."""
        if self.trainable:
            if length > self.l_max:
                raise SequenceTooLongError(
                    f"input length {length} exceeds l_max={self.l_max} of a trained positional table; "
                    "use a model with a larger l_max"
                )
            return self.z[:, :length], self.t[:, :length]
        return self.features(length), self.lags(length)


class ExponentialModulation(nn.Module):
    """h ⊙ (exp(-|α| t) + shift), α spread linearly from log(target)/slow to log(target)/fast."""

    def __init__(self, d: int, fast_decay_pct=0.3, slow_decay_pct=1.5, target=1e-2, shift: float = 0.0):
        super().__init__()
        self.shift = shift
        lo, hi = math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct
        self.register_buffer("deltas", torch.linspace(lo, hi, d)[None, None])

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    """Implicit long filter for ``channels`` channels: ``filter(L)`` -> [channels, L]; ``bias`` is D."""

    def __init__(
        self,
        channels: int,
        emb_dim: int = 3,
        order: int = 64,
        l_max: int = 1024,
        w: float = 1.0,
        num_inner_mlps: int = 2,
        trainable_pos: bool = False,
        pos_freqs: str = "linear",
        shared_sin: bool = False,
        modulation_shift: float = 0.0,
    ):
        super().__init__()
        self.pos_emb = PositionalEmbedding(emb_dim, l_max, trainable_pos, pos_freqs)
        sin = Sin(order, w)
        layers: list[nn.Module] = [nn.Linear(emb_dim, order), sin]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(order, order), sin if shared_sin else Sin(order, w)]
        layers.append(nn.Linear(order, channels, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        self.modulation = ExponentialModulation(channels, shift=modulation_shift)
        self.bias = nn.Parameter(torch.randn(channels))

    def filter(self, length: int) -> torch.Tensor:
        z, t = self.pos_emb(length)
        h = self.modulation(t, self.implicit_filter(z))  # [1, L, channels]
        return h[0].transpose(0, 1)


class HyenaOperator(nn.Module):
    """``forward(u [B, L, d]) -> [B, L, d]``; ``cache`` (a :class:`HyenaState`) for streaming."""

    def __init__(
        self,
        d_model: int,
        l_max: int,
        order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 3,
        short_filter_order: int = 3,
        w: float = 1.0,
        num_inner_mlps: int = 2,
        dropout: float = 0.0,
        trainable_pos: bool = False,
        pos_freqs: str = "linear",
        shared_sin: bool = False,
    ):
        super().__init__()
        if order < 2:
            raise ValueError(f"order must be >= 2 (one long convolution per order above 1), got {order}")
        self.d, self.order, self.l_max = d_model, order, l_max
        width = d_model * (order + 1)
        self.in_proj = nn.Linear(d_model, width)
        self.out_proj = nn.Linear(d_model, d_model)
        self.short_filter = nn.Conv1d(width, width, short_filter_order, groups=width, padding=short_filter_order - 1)
        self.filter_fn = HyenaFilter(
            d_model * (order - 1),
            emb_dim=emb_dim,
            order=filter_order,
            l_max=l_max,
            w=w,
            num_inner_mlps=num_inner_mlps,
            trainable_pos=trainable_pos,
            pos_freqs=pos_freqs,
            shared_sin=shared_sin,
        )
        self.dropout = nn.Dropout(dropout)

    def _filters(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(h [order-1, d, length], D [order-1, d])."""
        h = self.filter_fn.filter(length).view(self.order - 1, self.d, length)
        return h, self.filter_fn.bias.view(self.order - 1, self.d)

    def _spectra(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """FFTs of the filters for a length-L input, and D. Without autograd the result is kept and
        reused while the filter's parameters are unchanged (in-place updates bump their version)."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.filter_fn.parameters()):
            h, D = self._filters(length)
            return filter_spectrum(h, length), D
        key = (length, tuple(p._version for p in self.filter_fn.parameters()), self.filter_fn.bias.device)
        if getattr(self, "_spectrum_key", None) != key:
            h, D = self._filters(length)
            self._spectrum, self._spectrum_key = (filter_spectrum(h, length), D), key
        return self._spectrum

    def forward(self, u: torch.Tensor, cache: HyenaState | None = None, mask: torch.Tensor | None = None):
        """u [B, L, d]. ``mask`` [B, 1, L] (1 = token, 0 = padding) zeroes padded positions after the
        input projection, so padding contributes nothing to any convolution. With ``cache``: an empty
        one is filled by this (FFT) forward; a non-empty one is continued by the new tokens, each
        costing O(L d) against the cached inputs."""
        if cache is not None and cache.length:
            return self._step(u, cache)
        b, length, _ = u.shape
        if length > self.l_max and self.filter_fn.pos_emb.trainable:
            self.filter_fn.pos_emb(length)  # raises the clear error
        z_in = self.in_proj(u).transpose(1, 2)  # [B, (N+1) d, L]
        if mask is not None:
            z_in = z_in * mask
        z = self.short_filter(z_in)[..., :length]
        *xs, v = z.split(self.d, dim=1)
        h_f, D = self._spectra(length)
        inputs = []
        for o, x_i in enumerate(reversed(xs[1:])):
            v = self.dropout(v * x_i)
            if mask is not None:  # the short convolution's bias makes padded positions non-zero again
                v = v * mask
            inputs.append(v)
            v = fft_causal_conv(v, h_f=h_f[o], D=D[o])
        if cache is not None:
            k = self.short_filter.kernel_size[0] - 1
            cache.conv = F.pad(z_in, (max(0, k - length), 0))[..., z_in.shape[-1] + max(0, k - length) - k :]
            cache.inputs, cache.length = inputs, length
        y = v * xs[0]
        return self.out_proj(y.transpose(1, 2))

    # ---------------------------------------------------------------- streaming
    def new_state(self) -> HyenaState:
        return HyenaState()

    def _step(self, u: torch.Tensor, st: HyenaState) -> torch.Tensor:
        """Continue a sequence by ``u`` [B, T, d] from a non-empty state. The long convolutions are
        evaluated directly against each order's cached inputs: O(T L d) for T new tokens after L."""
        T = u.shape[1]
        k = self.short_filter.kernel_size[0] - 1
        z_in = self.in_proj(u).transpose(1, 2)  # [B, W, T]
        full = torch.cat([st.conv, z_in], dim=-1)
        st.conv = full[..., full.shape[-1] - k :]
        z = F.conv1d(full, self.short_filter.weight, self.short_filter.bias, groups=full.shape[1])  # [B, W, T]
        *xs, v = z.split(self.d, dim=1)
        start, total = st.length, st.length + T
        if st.h is None or st.h.shape[-1] < total:  # filters for twice the length, reused until then
            if self.filter_fn.pos_emb.trainable and total > self.l_max:
                self.filter_fn.pos_emb(total)  # raises the clear error
            n = max(total, 2 * st.length) if not self.filter_fn.pos_emb.trainable else min(self.l_max, 2 * total)
            st.h, st.D = (t.detach() if not torch.is_grad_enabled() else t for t in self._filters(max(n, total)))
        lags = torch.arange(start, total, device=u.device)[:, None] - torch.arange(total, device=u.device)[None, :]
        causal = lags >= 0
        for o, x_i in enumerate(reversed(xs[1:])):
            v = v * x_i  # this order's new inputs [B, d, T]
            seq = torch.cat([st.inputs[o], v], dim=-1)
            st.inputs[o] = seq
            hk = st.h[o][:, lags.clamp(min=0)] * causal  # [d, T, total]: h_{t-s} for s <= t
            v = torch.einsum("dts,bds->bdt", hk, seq) + v * st.D[o][:, None]
        st.length = total
        y = v * xs[0]
        return self.out_proj(y.transpose(1, 2))


class HyenaState:
    """Streaming state of one operator: the short convolution's last inputs and, per order, every
    input the long convolution has seen (a long convolution's state is its whole input)."""

    def __init__(self) -> None:
        self.conv: torch.Tensor | None = None
        self.inputs: list | None = None
        self.length = 0
        self.h: torch.Tensor | None = None  # filters generated for some length >= self.length
        self.D: torch.Tensor | None = None

    def nbytes(self) -> int:
        ts = ([self.conv] if self.conv is not None else []) + [t for t in (self.inputs or []) if t is not None]
        return sum(t.numel() * t.element_size() for t in ts)
