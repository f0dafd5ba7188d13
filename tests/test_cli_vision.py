import json

import pytest
import torch

from polyformer import create_model
from polyformer.cli import main


def test_predict_prints_top_k_with_class_names(tmp_path, capsys):
    from PIL import Image

    model = create_model("vit-mnist-patch4", n_layers=1, num_classes=3)
    model.save_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "preprocessor.json").write_text(
        json.dumps({"mean": [0.1307], "std": [0.3081], "class_names": ["zero", "one", "two"]})
    )
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.png")  # any mode and size: converted
    rc = main(["predict", str(tmp_path / "ckpt"), str(tmp_path / "a.png"), "--top-k", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(str(tmp_path / "a.png")) and out.count(",") == 1
    assert any(n in out for n in ("zero", "one", "two"))
    (tmp_path / "b.png").write_text("not an image")
    rc = main(["predict", str(tmp_path / "ckpt"), str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "b.png is not a readable image" in err and err.count("\n") == 1


def test_convert_both_ways(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=8,
        patch_size=4,
        num_labels=3,
    )
    hf = transformers.ViTForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to-hf"]) == 0
    again = transformers.ViTForImageClassification.from_pretrained(tmp_path / "back").eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(again(x).logits, hf(x).logits, atol=1e-5)


def test_finetune_a_converted_hf_checkpoint_from_the_cli(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=8,
        patch_size=4,
        num_channels=1,
        num_labels=3,
    )
    transformers.ViTForImageClassification(cfg).save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    (tmp_path / "ft.yaml").write_text(
        "task: image_classification\ndata: {dataset: digits}\nmax_steps: 3\nbatch_size: 16\n"
        "eval_interval: 0\nprogress: false\n"
    )
    args = [f"init_from={tmp_path / 'ours'}", "trainable_blocks=1", "layer_decay=0.75", f"out_dir={tmp_path / 'ft'}"]
    assert main(["train", str(tmp_path / "ft.yaml"), *args]) == 0
    out = capsys.readouterr().out
    assert "new head for 10 classes (the checkpoint had 3)" in out
    tuned = json.loads((tmp_path / "ft" / "config.json").read_text())["config"]
    assert tuned["num_classes"] == 10 and tuned["d_model"] == 16 and tuned["n_layers"] == 2
