"""Audio: 16-bit PCM WAV files, a folder dataset with free-spoken-digit names, log-mel features.

``read_wav`` accepts RIFF/WAVE files with 16-bit PCM samples and returns float32 samples in [-1, 1);
anything else (not RIFF/WAVE, 8/24/32-bit, stereo where mono is required, no samples) is a one-line
``DataError`` naming the file. ``resample`` changes the rate by band-limited (FFT) interpolation.

Free Spoken Digit Dataset names, ``{digit}_{speaker}_{take}.wav``, give the label; its official split
puts takes 0-4 in the test set and takes 5-49 in the training set.

Log-mel features: |STFT|^2 (Hann window) -> mel filter bank (HTK mel scale,
mel(f) = 2595 log10(1 + f / 700), triangular filters) -> log(x + 1e-6).
"""

from __future__ import annotations

import math
import os
import re
import wave
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def read_wav(path: str | os.PathLike, mono: bool = True) -> tuple[torch.Tensor, int]:
    """(samples [T] (mono) or [T, channels], sample rate)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise DataError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise DataError(f"{path} is not a readable PCM WAV file ({e})") from None
    if width != 2:
        raise DataError(f"{path} has {8 * width}-bit samples; only 16-bit PCM is supported (convert it)")
    if mono and channels != 1:
        raise DataError(f"{path} has {channels} channels; a mono recording is required (mix it down)")
    samples = np.frombuffer(raw, dtype="<i2")
    if samples.size == 0:
        raise DataError(f"{path} contains no samples")
    x = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    return (x if channels == 1 else x.view(-1, channels)), rate


def resample(x: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """Band-limited resampling of [T] (or [..., T]) from ``rate`` to ``target`` Hz via the real FFT."""
    if rate == target:
        return x
    n = x.shape[-1]
    m = max(1, round(n * target / rate))
    spec = torch.fft.rfft(x.double(), n=n)
    bins = m // 2 + 1
    out = torch.zeros(*spec.shape[:-1], bins, dtype=spec.dtype)
    keep = min(bins, spec.shape[-1])
    out[..., :keep] = spec[..., :keep]
    return (torch.fft.irfft(out, n=m) * (m / n)).to(x.dtype)


def parse_fsdd_name(name: str) -> tuple[int, str, int] | None:
    """'7_jackson_32.wav' -> (7, 'jackson', 32); None for other names."""
    m = FSDD_NAME.match(name)
    return (int(m.group(1)), m.group(2), int(m.group(3))) if m else None


def load_wav_folder(
    root: str | os.PathLike, sample_rate: int = 8000, max_len: int | None = None, split: str | None = None
):
    """Every ``*.wav`` under ``root`` with a free-spoken-digit name -> (list of [T_i] waveforms at
    ``sample_rate``, labels [N]). ``split``: 'train' (takes >= 5), 'test' (takes 0-4) or None (all).
    Other sample rates are resampled; ``max_len`` trims longer clips."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"audio folder {root} does not exist")
    waves, labels = [], []
    for path in sorted(root.rglob("*.wav")):
        parsed = parse_fsdd_name(path.name)
        if parsed is None:
            continue
        digit, _, take = parsed
        if split == "train" and take < 5 or split == "test" and take >= 5:
            continue
        x, rate = read_wav(path)
        x = resample(x, rate, sample_rate)
        waves.append(x[:max_len] if max_len else x)
        labels.append(digit)
    if not waves:
        raise DataError(
            f"no '<digit>_<speaker>_<take>.wav' files under {root}" + (f" for split {split}" if split else "")
        )
    return waves, torch.tensor(labels)


def pad_waves(waves: list[torch.Tensor], multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to a common length (a multiple of ``multiple``): (batch [B, T], mask [B, T])."""
    t = max(w.shape[0] for w in waves)
    t = -(-t // multiple) * multiple
    batch = torch.zeros(len(waves), t)
    mask = torch.zeros(len(waves), t)
    for i, w in enumerate(waves):
        batch[i, : w.shape[0]] = w
        mask[i, : w.shape[0]] = 1
    return batch, mask


def mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters on the HTK mel scale, up to Nyquist."""

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = torch.tensor([hz(m) for m in np.linspace(0.0, mel(sample_rate / 2), n_mels + 2)], dtype=torch.float32)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def log_mel(x: torch.Tensor, sample_rate: int = 8000, n_fft: int = 256, hop: int = 80, n_mels: int = 40):
    """[T] or [B, T] waveform -> [frames, n_mels] or [B, frames, n_mels] log-mel energies."""
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)
    power = spec.abs().square()  # [..., freq, frames]
    mel = mel_filters(n_fft, n_mels, sample_rate).to(power.dtype) @ power
    return torch.log(mel + 1e-6).transpose(-1, -2)
