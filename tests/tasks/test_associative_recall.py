import pytest
import torch

from polyformer.errors import ConfigError
from polyformer.tasks.associative_recall import make_examples, vocabulary
from polyformer.train.tasks import AssociativeRecallTask


def test_examples_follow_the_definition():
    x, train_y, test_y = make_examples(50, seq_len=20, vocab_size=30, seed=0)
    vocab = vocabulary(30)
    assert vocab[:3] == ["0", "1", "10"] and vocab[-2:] == ["=>", "."]
    assert x.shape == (50, 22) and torch.equal(train_y[:, :-1], x[:, 1:])
    assert (test_y[:, :-1] == -100).all()
    for row, last in zip(x.tolist(), test_y[:, -1].tolist()):
        pairs = dict(zip(row[0:20:2], row[1:20:2]))
        assert all(k < 14 for k in row[0:20:2]) and all(14 <= v < 28 for v in row[1:20:2])
        assert row[20] == vocab.index("=>") and pairs[row[21]] == last  # the recalled value
    assert len({tuple(r) for r in x.tolist()}) == 50  # de-duplicated
    x2, _, _ = make_examples(50, seq_len=20, vocab_size=30, seed=1)
    assert not torch.equal(x, x2)


def test_too_many_examples_for_the_space_is_an_error():
    with pytest.raises(ValueError, match="distinct examples"):
        make_examples(10_000, seq_len=2, vocab_size=6, seed=0)


def test_length_curriculum_and_resume():
    data = {"vocab_size": 10, "seq_len": 32, "n_train": 12, "n_test": 4, "start_length": 8, "stage_steps": 3}
    task = AssociativeRecallTask(data, batch_size=4, seed=0)
    lengths = [task.train_batch()["x"].shape[1] for _ in range(10)]
    assert lengths == [10] * 3 + [18] * 3 + [34] * 4  # inputs hold length + 2 tokens
    assert task.test_x.shape[1] == 34

    # interrupted at a stage boundary, a resumed task continues with exactly the same batches
    a = AssociativeRecallTask(data, batch_size=4, seed=0)
    for _ in range(3):
        a.train_batch()
    state, gen = a.state_dict(), a.gen.get_state()
    b = AssociativeRecallTask(data, batch_size=4, seed=0)
    b.load_state_dict(state)
    b.gen.set_state(gen)
    for _ in range(5):
        assert torch.equal(a.train_batch()["x"], b.train_batch()["x"])
    with pytest.raises(ConfigError, match="start_length"):
        AssociativeRecallTask(data | {"start_length": 64}, batch_size=4, seed=0)
