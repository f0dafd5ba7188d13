import pytest
import torch

from polyformer import DataError, create_model, from_pretrained


@pytest.mark.parametrize(
    "name,classes,expected",
    [
        ("activator-cifar", 10, 2_650_890),
        ("activator-cifar", 100, 2_674_020),
        ("activator-glu-only-cifar", 10, 1_599_242),
        ("activator-glu-only-cifar", 100, 1_622_372),
    ],
)
def test_parameter_counts_match_the_authors_code(name, classes, expected):
    assert create_model(name, num_classes=classes).num_parameters() == expected


def test_no_layer_mixes_tokens():
    """The hidden state of each patch depends only on that patch's pixels (float64, exact zeros)."""
    model = create_model("activator-cifar", n_layers=2, dropout=0.0).double().eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    h = model(x).hidden_states  # [1, 16 patches, d]
    (g,) = torch.autograd.grad(h[0, 5].sum(), x)
    patch = torch.zeros(4, 4, dtype=torch.bool)
    patch[1, 1] = True  # token 5 is row 1, column 1 of the 4x4 patch grid
    touched = g.abs().sum(1)[0].reshape(4, 4, 4, 4).permute(0, 2, 1, 3).reshape(4, 4, 16).sum(-1) > 0
    assert torch.equal(touched, patch)


@pytest.mark.parametrize("glu", ["geglu", "swiglu", "reglu"])
def test_glu_flavours_train(glu):
    model = create_model("activator-mnist", glu=glu, n_layers=1)
    out = model(torch.randn(2, 1, 28, 28), labels=torch.tensor([3, 4]))
    out.loss.backward()
    assert model.blocks[0].gate.w1.weight.grad is not None


def test_any_image_size_and_bad_inputs():
    model = create_model("activator-mnist", n_layers=1)
    assert model(torch.randn(1, 1, 36, 20)).logits.shape == (1, 10)  # no positions: any size works
    with pytest.raises(DataError, match="1-channel"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(DataError, match="smaller than one 4x4 patch"):
        model(torch.randn(1, 1, 2, 2))


def test_save_load(tmp_path):
    model = create_model("activator-mnist", n_layers=1).eval()
    model.save_pretrained(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(from_pretrained(tmp_path)(x).logits, model(x).logits)
