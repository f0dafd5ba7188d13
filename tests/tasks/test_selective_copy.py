import pytest
import torch

from polyformer.errors import ConfigError
from polyformer.tasks.selective_copy import BLANK, SEP, answer_accuracy, selective_copy_batch
from polyformer.train import TrainConfig, train
from polyformer.train.tasks import SelectiveCopyTask, curriculum_length


def test_batch_layout():
    ids, labels = selective_copy_batch(
        8, length=40, n_data=5, vocab_size=10, generator=torch.Generator().manual_seed(0)
    )
    assert ids.shape == labels.shape == (8, 46)
    for row, lab in zip(ids, labels):
        context, sep, answer = row[:40], row[40], row[41:]
        assert sep == SEP and (context != BLANK).sum() == 5
        assert torch.equal(context[context != BLANK], answer)  # the data tokens, in order
        assert ((answer >= 2) & (answer < 10)).all()
        assert (lab[:41] == -100).all() and torch.equal(lab[41:], answer)


def test_answer_accuracy_counts_only_the_answer():
    ids, labels = selective_copy_batch(2, length=10, n_data=3, vocab_size=8)
    perfect = torch.nn.functional.one_hot(labels.clamp_min(0).roll(-1, 1), 8).float()
    assert answer_accuracy(perfect, labels) == (6, 6)


def test_trains_and_stops_at_accuracy(tmp_path):
    cfg = TrainConfig(
        model="mamba-tiny",
        task="selective_copy",
        data={"length": 24, "n_data": 3, "vocab_size": 6, "n_val": 64},
        out_dir=str(tmp_path),
        max_steps=6,
        batch_size=16,
        eval_interval=3,
        stop_accuracy=1.01,
        progress=False,
    )
    r = train(cfg)
    assert r["model"].config.vocab_size == 6 and 0.0 <= r["accuracy"] <= 1.0 and r["step"] == 6


def test_length_curriculum_doubles_per_stage_and_resumes():
    task = SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 8, "stage_steps": 2}, 4, seed=0)
    widths = [task.train_batch()["x"].shape[1] - 1 - 3 for _ in range(9)]
    assert widths == [8, 8, 16, 16, 32, 32, 40, 40, 40]
    assert task.val[0].shape[1] == 40 + 1 + 3  # evaluation at the full length
    resumed = SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 8, "stage_steps": 2}, 4, seed=0)
    resumed.load_state_dict(task.state_dict())
    assert resumed.train_length() == 40
    fresh = SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 8, "stage_steps": 2}, 4, seed=0)
    fresh.load_state_dict({"batches": 3})
    assert fresh.train_length() == 16
    with pytest.raises(ConfigError, match="start_length"):
        SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 80}, 4, seed=0)
    with pytest.raises(ConfigError, match="n_data"):
        SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 2}, 4, seed=0)


def test_curriculum_stage_lists():
    steps = [3, 1]
    assert [curriculum_length(b, 8, 40, steps) for b in range(7)] == [8, 8, 8, 16, 32, 40, 40]
    assert curriculum_length(10**6, 8, 40, [5]) == 40 and curriculum_length(0, 40, 40, [5]) == 40
    with pytest.raises(ConfigError, match="stage_steps"):
        SelectiveCopyTask({"length": 40, "n_data": 3, "start_length": 8, "stage_steps": [2, 0]}, 4, seed=0)
