import pytest
import torch

from polyformer import ConfigError, DataError, create_model, from_pretrained
from polyformer.info import model_stats


@pytest.mark.parametrize(
    "name,expected",
    [("vit-tiny-patch16-224", 5_717_416), ("vit-small-patch16-224", 22_050_664), ("vit-base-patch16-224", 86_567_656)],
)
def test_published_sizes(name, expected):
    # timm's deit_tiny / deit_small / vit_base_patch16_224 with a 1000-class head have these counts
    with torch.device("meta"):
        assert create_model(name).num_parameters() == expected


def test_forward_loss_and_pooling():
    model = create_model("vit-mnist-patch4", n_layers=2)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    out = model(x, labels=y)
    assert out.logits.shape == (4, 10) and out.hidden_states.shape == (4, 50, 128)
    out.loss.backward()
    mean = create_model("vit-mnist-patch4", n_layers=2, pooling="mean")
    assert mean(x).logits.shape == (4, 10)


def test_interpolation_is_identity_at_training_size():
    model = create_model("vit-cifar-patch4", n_layers=1).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x).logits, model(x, interpolate_pos_encoding=True).logits)
    assert model(torch.randn(1, 3, 48, 40), interpolate_pos_encoding=True).logits.shape == (1, 10)


def test_bad_inputs_are_clear_errors():
    model = create_model("vit-mnist-patch4", n_layers=1)
    with pytest.raises(DataError, match="1-channel images, got 3"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(DataError, match=r"\(32x32\) doesn't match the model \(28x28\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(DataError, match="floating point"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"\[batch, channels, height, width\]"):
        model(torch.randn(28, 28))
    with pytest.raises(ConfigError, match="patch_size"):
        create_model("vit-mnist-patch4", patch_size=64)


def test_save_load_round_trip(tmp_path):
    model = create_model("vit-mnist-patch4", n_layers=2).eval()
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(model(x).logits, loaded(x).logits)


def test_info_has_no_kv_cache_for_vit():
    s = model_stats("vit-base-patch16-224")
    assert s.kv_cache_bytes == 0 and s.seq_len == 197
