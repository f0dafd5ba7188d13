"""Long runs, excluded from the default suite (``make test-all`` or ``pytest -m slow``)."""

import pytest

from conftest import shared_data


@pytest.mark.slow
def test_demo_reaches_95_percent(tmp_path):
    from polyformer.demo import main

    assert main(["--out", str(tmp_path / "demo")]) == 0


@pytest.mark.slow
def test_fast_shakespeare_recipe_reaches_nanogpt_loss(tmp_path):
    from polyformer.train import load_train_config, train

    path = shared_data("tinyshakespeare", "input.txt")
    from conftest import REPO

    cfg = load_train_config(
        REPO / "configs" / "shakespeare_char_fast.yaml",
        [f"data.path={path}", f"out_dir={tmp_path}", "progress=false", "eval_interval=0"],
    )
    assert train(cfg)["val_loss"] <= 1.88
