"""Fine-tuning: new head, frozen blocks, layer-wise learning-rate decay, ``init_from``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polyformer import create_model, from_pretrained
from polyformer.errors import CheckpointError, ConfigError
from polyformer.train import TrainConfig, param_groups, train
from polyformer.train.finetune import block_stack, freeze_all_but_last, layer_depths, replace_head


def test_layer_depths_vit():
    model = create_model("vit-mnist-tiny-patch4", n_layers=3)
    d = layer_depths(model)
    assert block_stack(model) == ("blocks", 3)
    assert d["cls_token"] == d["pos_embed"] == d["patch_embed.weight"] == 0
    assert d["blocks.0.mlp.fc1.weight"] == 1 and d["blocks.2.self_attn.q_proj.weight"] == 3
    assert d["norm.weight"] == d["head.bias"] == 4


def test_layer_depths_transformer_lm_and_seq2seq_refused():
    lm = create_model("lm-tiny", n_layers=2)
    d = layer_depths(lm)
    assert block_stack(lm) == ("blocks.layers", 2)
    assert d["embed.token.weight"] == d["embed.pos.weight"] == 0 and max(d.values()) == 3
    with pytest.raises(ConfigError, match="exactly one stack"):
        layer_depths(create_model("transformer-tiny"))


def test_freeze_all_but_last():
    model = create_model("vit-mnist-tiny-patch4", n_layers=3)
    n = freeze_all_but_last(model, 1)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(("blocks.2.", "norm.", "head.")) for k in trainable)
    assert n == sum(p.numel() for k, p in model.named_parameters() if k in trainable)
    freeze_all_but_last(model, 0)  # linear probe: head and final norm
    assert {k.split(".")[0] for k, p in model.named_parameters() if p.requires_grad} == {"norm", "head"}
    freeze_all_but_last(model, -1)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError, match="at most the model's 3 blocks"):
        freeze_all_but_last(model, 4)


def test_layer_decay_groups():
    model = create_model("vit-mnist-tiny-patch4", n_layers=2)
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert scale[id(model.head.weight)] == 1.0 and scale[id(model.norm.weight)] == 1.0
    assert scale[id(model.blocks[1].mlp.fc1.weight)] == 0.5
    assert scale[id(model.blocks[0].mlp.fc1.weight)] == 0.25
    assert scale[id(model.patch_embed.weight)] == scale[id(model.pos_embed)] == 0.125
    assert wd[id(model.blocks[0].mlp.fc1.weight)] == 0.05 and wd[id(model.blocks[0].mlp.fc1.bias)] == 0.0
    assert wd[id(model.pos_embed)] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    freeze_all_but_last(model, 1)  # frozen parameters are left out of the optimiser
    assert sum(len(g["params"]) for g in param_groups(model, 0.05, 0.5)) == sum(
        p.requires_grad for p in model.parameters()
    )
    with pytest.raises(ConfigError, match="layer_decay"):
        param_groups(model, 0.05, layer_decay=1.5)


def test_replace_head():
    model = create_model("activator-mnist", n_layers=1)
    replace_head(model, 3)
    assert model.head.out_features == 3 and model.config.num_classes == 3
    assert model(torch.randn(2, 1, 28, 28)).logits.shape == (2, 3)
    with pytest.raises(ConfigError, match="no classification head"):
        replace_head(create_model("lm-tiny"), 3)


def _digit_folder(root, classes, size=8):
    """A few classes of scikit-learn's 8x8 digits written as PNG files: a new label set."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in classes:
        (root / f"digit{c}").mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == c][:60]):
            px = (img * 255 / 16).astype(np.uint8)
            Image.fromarray(px, mode="L").resize((size, size)).save(root / f"digit{c}" / f"{i}.png")
    return root


def _pretrain(out):
    return TrainConfig(
        model="vit-mnist-tiny-patch4",
        task="image_classification",
        data={"dataset": "digits"},
        model_overrides={"n_layers": 3, "patch_size": 2},
        out_dir=str(out),
        max_steps=100,
        batch_size=64,
        lr=3e-3,
        warmup_steps=3,
        eval_interval=0,
        progress=False,
    )


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 3-block ViT trained briefly on the 10 digit classes, shared by the tests below."""
    out = tmp_path_factory.mktemp("pre")
    train(_pretrain(out))
    return out


def test_finetune_new_labels_frozen_blocks_and_layer_decay(tmp_path, pretrained):
    before = load_file(str(pretrained / "model.safetensors"))
    folder = _digit_folder(tmp_path / "data", [3, 5, 8])
    lines = []
    cfg = TrainConfig(
        model="ignored-when-init-from",
        task="image_classification",
        data={"dataset": "folder", "path": str(folder), "channels": 1},
        init_from=str(pretrained),
        trainable_blocks=1,
        layer_decay=0.5,
        out_dir=str(tmp_path / "ft"),
        max_steps=40,
        batch_size=32,
        lr=3e-3,
        warmup_steps=2,
        eval_interval=0,
        progress=False,
    )
    r = train(cfg, log=lines.append)
    assert any("new head for 3 classes (the checkpoint had 10)" in line for line in lines), lines
    model = from_pretrained(tmp_path / "ft")
    assert model.config.num_classes == 3 and model.config.n_layers == 3 and model.config.patch_size == 2
    after = model.state_dict()
    for k in ("patch_embed.weight", "pos_embed", "blocks.0.self_attn.q_proj.weight", "blocks.1.mlp.fc2.bias"):
        assert torch.equal(after[k], before[k]), k  # frozen
    assert not torch.equal(after["blocks.2.mlp.fc1.weight"], before["blocks.2.mlp.fc1.weight"])
    assert r["accuracy"] > 0.6, r["accuracy"]  # 3 classes: chance is 0.33
    state = json.loads((tmp_path / "ft" / "trainer_state.json").read_text())
    assert sorted({g["lr_scale"] for g in state["param_groups"]}) == [0.5, 1.0]  # last block, head
    # running the same command again resumes the finished run instead of re-initialising
    again = train(cfg, log=lines.append)
    assert again["step"] == 40 and any("resumed" in line for line in lines)


def test_finetune_at_another_resolution_resizes_positions(tmp_path, pretrained):
    folder = _digit_folder(tmp_path / "data", [0, 1], size=16)
    lines = []
    cfg = TrainConfig(
        task="image_classification",
        data={"dataset": "folder", "path": str(folder), "channels": 1},
        init_from=str(pretrained),
        out_dir=str(tmp_path / "ft"),
        max_steps=2,
        batch_size=16,
        eval_interval=0,
        progress=False,
    )
    r = train(cfg, log=lines.append)
    assert r["model"].config.image_size == 16 and r["model"].pos_embed.shape == (1, 65, 64)
    assert any("from a 4x4 to a 8x8 patch grid" in line for line in lines), lines


def test_finetune_refuses_other_channels_and_missing_checkpoint(tmp_path, pretrained):
    folder = _digit_folder(tmp_path / "data", [0, 1])
    base = dict(
        task="image_classification",
        out_dir=str(tmp_path / "ft"),
        max_steps=1,
        eval_interval=0,
        progress=False,
    )
    rgb = {"dataset": "folder", "path": str(folder), "channels": 3}
    with pytest.raises(ConfigError, match="num_channels=1 but the data has 3"):
        train(TrainConfig(data=rgb, init_from=str(pretrained), **base))
    with pytest.raises(CheckpointError, match="does not exist"):
        train(TrainConfig(data={"dataset": "digits"}, init_from=str(tmp_path / "nowhere"), **base))
    with pytest.raises(ConfigError, match="trainable_blocks"):
        TrainConfig(trainable_blocks=-2)
