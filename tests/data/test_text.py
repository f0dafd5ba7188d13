import gzip

import pytest
import torch

from conftest import shared_data
from polyformer import DataError
from polyformer.data.text import ParallelData, TokenStream, read_lines, read_text


def test_read_text_plain_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text("hello\nworld\n")
    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write("hello\nworld\n")
    assert read_lines(tmp_path / "a.txt") == read_lines(tmp_path / "a.txt.gz") == ["hello", "world"]
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(DataError, match="UTF-8"):
        read_text(tmp_path / "bin.txt")


def test_full_validation_windows_cover_every_token_once():
    ids = torch.arange(1000)
    s = TokenStream(ids, 0.9)
    targets = torch.cat([y.reshape(-1) for _, y in s.full_windows("val", 16, 4)])
    assert torch.equal(targets, s.val[1:])
    for x, y in s.full_windows("val", 16, 4):
        assert torch.equal(x + 1, y)  # inputs are the targets shifted by one


def test_parallel_batches_respect_token_budget_and_cover_all():
    pairs = [([5] * (i % 7 + 1), [6] * (i % 5 + 1)) for i in range(300)]
    d = ParallelData(pairs, bos=1, eos=2, pad=0)
    batches = d.epoch_batches(64, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(300))
    for b in batches:
        batch = d.collate(b)
        assert batch["tgt"][:, 0].eq(1).all()
        assert (batch["src"].shape[1] + batch["tgt"].shape[1]) * len(b) <= 64 + 13


def test_multi30k_reads_as_aligned_pairs():
    folder = shared_data("multi30k")
    de, en = read_lines(folder / "val.de.gz"), read_lines(folder / "val.en.gz")
    assert len(de) == len(en) == 1014 and all(de) and all(en)


def test_tinyshakespeare_has_65_characters():
    text = read_text(shared_data("tinyshakespeare", "input.txt"))
    assert len(text) == 1_115_394 and len(set(text)) == 65
