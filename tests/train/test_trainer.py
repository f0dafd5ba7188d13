import json
import math

import pytest
import torch

from polyformer import create_model
from polyformer.train import TrainConfig, load_train_config, lr_at, param_groups, train


def test_cosine_schedule_shape():
    lrs = [lr_at(s, "cosine", 1e-3, 10, 100, 1e-4) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_inverse_sqrt_is_the_papers_formula():
    d, w = 512, 4000
    for s in (1, 100, 4000, 10000):
        expected = d**-0.5 * min(s**-0.5, s * w**-1.5)
        assert lr_at(s - 1, "inverse_sqrt", 1.0, w, 100000, d_model=d) == pytest.approx(expected)


def test_no_weight_decay_on_norms_biases_embeddings():
    model = create_model("lm-tiny", bias=True)
    decay, no_decay = param_groups(model, 0.1)
    decay_ids = {id(p) for p in decay["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    for p in decay["params"]:
        assert p.dim() == 2 and "embed" not in names[id(p)]
    assert id(model.embed.token.weight) not in decay_ids
    assert id(model.embed.pos.weight) not in decay_ids
    assert all(id(m.weight) not in decay_ids for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def _cfg(tmp_path, **kw):
    base = dict(
        model="transformer-tiny",
        task="sort",
        data={"n_train": 300, "n_val": 20, "max_len": 6},
        out_dir=str(tmp_path),
        max_steps=8,
        batch_size=8,
        eval_interval=4,
        warmup_steps=2,
        progress=False,
        eval={"max_examples": 8},
        model_overrides={"dropout": 0.1},
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_reduces_loss_and_writes_metrics(tmp_path):
    r = train(_cfg(tmp_path, max_steps=40, eval_interval=20, lr=3e-3, log_interval=5))
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_losses = [l["loss"] for l in lines if l["kind"] == "train"]
    assert train_losses[-1] < train_losses[0]
    assert lines[-1]["kind"] == "final" and math.isfinite(r["val_loss"])


def _crash_then_resume(monkeypatch, task_cls, make_cfg, out, crash, at_call: int):
    """Run make_cfg(out) with task_cls.train_batch raising ``crash`` on call ``at_call``, then rerun
    the same config (which resumes); returns the resumed run's model."""
    original, calls = task_cls.train_batch, {"n": 0}

    def crashing(self):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise crash
        return original(self)

    monkeypatch.setattr(task_cls, "train_batch", crashing)
    with pytest.raises(crash):
        train(make_cfg(out))
    monkeypatch.setattr(task_cls, "train_batch", original)
    return out, train(make_cfg(out))["model"]


def _assert_same_weights(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


@pytest.mark.parametrize("crash,saved_at", [(KeyboardInterrupt, 5), (MemoryError, 4)])
def test_resume_after_a_crash_continues_to_the_same_weights(tmp_path, monkeypatch, crash, saved_at):
    """Ctrl-C saves a checkpoint on the way out; a hard crash falls back to the last periodic one.
    Either way the resumed run ends with exactly the weights of an uninterrupted run."""
    from polyformer.train.tasks import Seq2SeqTask

    full = train(_cfg(tmp_path / "a", max_steps=8))["model"]
    saved = {}

    def make_cfg(out):
        if (out / "trainer_state.json").exists() and not saved:
            saved["step"] = json.loads((out / "trainer_state.json").read_text())["step"]
        return _cfg(out, max_steps=8, ckpt_interval=4)

    _, resumed = _crash_then_resume(monkeypatch, Seq2SeqTask, make_cfg, tmp_path / "b", crash, at_call=6)
    assert saved["step"] == saved_at  # where the crashed run left its checkpoint (dies during step 6)
    _assert_same_weights(full, resumed)


def test_yaml_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: lm-tiny\ntask: char_lm\ndata: {path: x.txt}\n")
    cfg = load_train_config(p, ["lr=3e-4", "data.train_fraction=0.8", "model_overrides.n_layers=2"])
    assert cfg.lr == 3e-4 and cfg.data == {"path": "x.txt", "train_fraction": 0.8}
    assert cfg.model_overrides == {"n_layers": 2}


def test_char_lm_task_full_validation(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    r = train(
        TrainConfig(
            model="lm-tiny",
            task="char_lm",
            data={"path": str(text)},
            out_dir=str(tmp_path / "o"),
            max_steps=30,
            batch_size=8,
            eval_interval=0,
            warmup_steps=5,
            progress=False,
            model_overrides={"n_layers": 1, "max_seq_len": 32},
        )
    )
    assert r["val_loss"] < math.log(r["model"].config.vocab_size)


def test_translation_task_with_bpe_and_bleu(tmp_path):
    import gzip

    words = ["ein", "hund", "eine", "katze", "läuft", "schläft", "im", "park", "haus"]
    en = {
        "ein": "a",
        "eine": "a",
        "hund": "dog",
        "katze": "cat",
        "läuft": "runs",
        "schläft": "sleeps",
        "im": "in the",
        "park": "park",
        "haus": "house",
    }
    import random

    rng = random.Random(0)
    de_lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(120)]
    en_lines = [" ".join(en[w] for w in s.split()) for s in de_lines]
    for split, sl in (("train", slice(0, 100)), ("val", slice(100, 120))):
        with gzip.open(tmp_path / f"{split}.de.gz", "wt") as f:
            f.write("\n".join(de_lines[sl]) + "\n")
        (tmp_path / f"{split}.en").write_text("\n".join(en_lines[sl]) + "\n")
    cfg = TrainConfig(
        model="transformer-tiny",
        task="translation",
        out_dir=str(tmp_path / "run"),
        max_steps=4,
        batch_size=16,
        max_tokens=256,
        eval_interval=0,
        progress=False,
        warmup_steps=1,
        data={
            "src_train": str(tmp_path / "train.de.gz"),
            "tgt_train": str(tmp_path / "train.en"),
            "src_val": str(tmp_path / "val.de.gz"),
            "tgt_val": str(tmp_path / "val.en"),
            "vocab_size": 300,
            "lowercase": True,
        },
        eval={"num_beams": 3, "bleu": True},
    )
    r = train(cfg)
    assert 0.0 <= r["bleu"] <= 100.0 and "case:lc" in r["bleu_signature"]
    assert len(r["task"].last_hypotheses) == 20
    assert (tmp_path / "run" / "tokenizer.json").is_file()


@pytest.mark.parametrize("model", ["vit-mnist-patch4", "activator-mnist"])
def test_image_classification_on_digits(tmp_path, model):
    cfg = TrainConfig(
        model=model,
        task="image_classification",
        data={"dataset": "digits"},
        model_overrides={"n_layers": 1, "patch_size": 2},
        out_dir=str(tmp_path),
        max_steps=60,
        batch_size=64,
        lr=3e-3,
        warmup_steps=5,
        eval_interval=0,
        progress=False,
    )
    r = train(cfg)
    assert r["model"].config.image_size == 8 and r["model"].config.num_channels == 1
    assert r["accuracy"] > 0.4, r["accuracy"]  # 10 classes: chance is 0.1


def test_vit_position_table_and_class_token_are_not_decayed():
    model = create_model("vit-mnist-patch4", n_layers=1)
    decay, _ = param_groups(model, 0.05)
    ids = {id(p) for p in decay["params"]}
    assert id(model.pos_embed) not in ids and id(model.cls_token) not in ids
    assert id(model.patch_embed.weight) in ids


def test_image_task_resume_after_interrupt_is_exact(tmp_path, monkeypatch):
    from polyformer.train.tasks import ImageTask

    def cfg(out):
        return TrainConfig(
            model="activator-mnist",
            task="image_classification",
            data={"dataset": "digits", "crop_padding": 1},
            out_dir=str(out),
            max_steps=6,
            batch_size=32,
            warmup_steps=1,
            eval_interval=0,
            progress=False,
            model_overrides={"n_layers": 1, "patch_size": 2, "dropout": 0.1},
        )

    full = train(cfg(tmp_path / "a"))["model"]
    _, resumed = _crash_then_resume(monkeypatch, ImageTask, cfg, tmp_path / "b", KeyboardInterrupt, at_call=4)
    _assert_same_weights(full, resumed)
