"""WAV reading, resampling, the spoken-digit folder and log-mel features."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from polyformer.data.audio import load_wav_folder, log_mel, pad_waves, parse_fsdd_name, read_wav, resample
from polyformer.errors import DataError


def _write(path, samples, rate=8000, width=2, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
        else:
            w.writeframes(np.asarray(samples, dtype=np.uint8).tobytes())


def test_read_and_errors(tmp_path):
    _write(tmp_path / "ok.wav", [0, 16384, -32768])
    x, rate = read_wav(tmp_path / "ok.wav")
    assert rate == 8000 and torch.equal(x, torch.tensor([0.0, 0.5, -1.0]))
    (tmp_path / "text.wav").write_text("hello, not audio")
    _write(tmp_path / "8bit.wav", [128, 130], width=1)
    _write(tmp_path / "stereo.wav", [1, 2, 3, 4], channels=2)
    _write(tmp_path / "empty.wav", [])
    cases = {"text.wav": "not a WAV file", "8bit.wav": "8-bit", "stereo.wav": "2 channels", "empty.wav": "no samples"}
    for name, msg in cases.items():
        with pytest.raises(DataError, match=msg) as e:
            read_wav(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_resample_keeps_a_tone():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 440 * t)
    down = resample(tone, 16000, 8000)
    ref = torch.sin(2 * torch.pi * 440 * torch.arange(8000) / 8000)
    assert down.shape == (8000,) and (down - ref)[100:-100].abs().max() < 1e-3


def test_fsdd_folder_split_and_features(tmp_path):
    assert parse_fsdd_name("7_jackson_32.wav") == (7, "jackson", 32) and parse_fsdd_name("x.wav") is None
    rng = np.random.default_rng(0)
    for digit, take in ((1, 0), (2, 3), (3, 5), (4, 49)):
        _write(tmp_path / f"{digit}_theo_{take}.wav", rng.integers(-3000, 3000, 400 + 10 * take))
    _write(tmp_path / "readme.wav", [0])  # other names are ignored
    _write(tmp_path / "5_theo_7.wav", rng.integers(-3000, 3000, 800), rate=16000)  # resampled to 8 kHz
    test_x, test_y = load_wav_folder(tmp_path, split="test")
    train_x, train_y = load_wav_folder(tmp_path, split="train")
    assert test_y.tolist() == [1, 2] and sorted(train_y.tolist()) == [3, 4, 5]
    assert {w.shape[0] for w in train_x} == {450, 890, 400}
    batch, mask = pad_waves(train_x, multiple=8)
    assert batch.shape == (3, 896) and mask.sum() == 450 + 890 + 400
    feats = log_mel(batch)
    assert feats.shape == (3, 896 // 80 + 1, 40) and torch.isfinite(feats).all()
