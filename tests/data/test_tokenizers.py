import pytest

from polyformer import CheckpointError, DataError
from polyformer.data import BPETokenizer, ByteTokenizer, CharTokenizer, load_tokenizer


def test_byte_tokenizer_round_trip_unicode():
    t = ByteTokenizer()
    ids = t.encode("héllo ✓", add_bos=True, add_eos=True)
    assert ids[0] == t.bos_id and ids[-1] == t.eos_id and t.vocab_size == 259
    assert t.decode(ids) == "héllo ✓"


def test_char_tokenizer_matches_nanogpt_encoding_without_specials():
    text = "hello world"
    t = CharTokenizer.from_text(text, specials=())
    chars = sorted(set(text))
    assert t.encode("low") == [chars.index(c) for c in "low"]
    assert t.decode(t.encode(text)) == text
    with pytest.raises(DataError):
        t.encode("xyz!")
    with pytest.raises(DataError):
        t.encode("h", add_eos=True)


def test_bpe_train_save_load(tmp_path):
    corpus = ["a man rides a horse", "two dogs play in the snow", "a woman reads a book"] * 30
    t = BPETokenizer.train(corpus, vocab_size=300)
    assert (t.pad_id, t.bos_id, t.eos_id) == (0, 1, 2)
    t.save(tmp_path / "tokenizer.json")
    u = load_tokenizer(tmp_path)
    s = "two dogs read a book"
    assert u.encode(s) == t.encode(s) and u.decode(u.encode(s)) == s


def test_corrupt_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"type": "mystery"}')
    with pytest.raises(CheckpointError, match="unknown tokenizer type"):
        load_tokenizer(tmp_path)
