"""Parity with transformers.ViTForImageClassification through from_hf / to_hf."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from polyformer import CheckpointError, DataError  # noqa: E402
from polyformer.interop import from_hf, to_hf  # noqa: E402


def _hf_model(**kw):
    cfg = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        num_channels=3,
        num_labels=5,
        **kw,
    )
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(cfg).eval()


@pytest.fixture
def hf_dir(tmp_path):
    model = _hf_model()
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


def test_from_hf_matches_transformers_logits(hf_dir):
    hf, path = hf_dir
    ours = from_hf(path)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, hf(x).logits, atol=1e-4)


def test_non_square_interpolation_matches(hf_dir):
    hf, path = hf_dir
    ours = from_hf(path)
    x = torch.randn(2, 3, 24, 12)
    with torch.no_grad():
        expected = hf(x, interpolate_pos_encoding=True).logits
        assert torch.allclose(ours(x, interpolate_pos_encoding=True).logits, expected, atol=1e-4)
    with pytest.raises(DataError, match="doesn't match the model"):
        ours(x)


def test_to_hf_round_trip_loads_in_transformers(hf_dir, tmp_path):
    hf, path = hf_dir
    ours = from_hf(path)
    out = to_hf(ours, tmp_path / "back")
    again = transformers.ViTForImageClassification.from_pretrained(out).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(again(x).logits, hf(x).logits, atol=1e-4)
        assert torch.allclose(
            again(x, interpolate_pos_encoding=True).logits, ours(x, interpolate_pos_encoding=True).logits, atol=1e-4
        )


V4_TO_V5 = [  # transformers 5.x renames (conversion_mapping.py), applied here whatever version is installed
    (r"vit\.encoder\.layer\.", "vit.layers."),
    (r"attention\.attention\.query", "attention.q_proj"),
    (r"attention\.attention\.key", "attention.k_proj"),
    (r"attention\.attention\.value", "attention.v_proj"),
    (r"attention\.output\.dense", "attention.o_proj"),
    (r"intermediate\.dense", "mlp.fc1"),
    (r"\.output\.dense", ".mlp.fc2"),
]


def test_transformers_5_layout_in_a_bin_file(tmp_path):
    import re

    from safetensors.torch import load_file

    hf = _hf_model()
    hf.save_pretrained(tmp_path / "ref")  # the 4.x/Hub layout on disk
    state = {}
    for key, value in load_file(str(tmp_path / "ref" / "model.safetensors")).items():
        for pattern, repl in V4_TO_V5:
            key = re.sub(pattern, repl, key)
        state[key] = value
    assert "vit.layers.0.attention.q_proj.weight" in state and "vit.layers.1.mlp.fc2.bias" in state
    assert not any("encoder.layer" in k or ".query." in k for k in state)
    (tmp_path / "v5").mkdir()
    (tmp_path / "v5" / "config.json").write_text((tmp_path / "ref" / "config.json").read_text())
    torch.save(state, tmp_path / "v5" / "pytorch_model.bin")
    ours = from_hf(tmp_path / "v5")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, hf(x).logits, atol=1e-4)


def test_corrupt_or_foreign_checkpoints(tmp_path, hf_dir):
    _, path = hf_dir
    (path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt weights"):
        from_hf(path)
    (path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="not supported"):
        from_hf(path)
    with pytest.raises(CheckpointError):
        from_hf(tmp_path / "missing")
