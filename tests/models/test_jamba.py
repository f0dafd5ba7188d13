"""Jamba and Mamba LMs: layout, cache, generation, counts, errors, save/load."""

from __future__ import annotations

import pytest
import torch

from polyformer import create_model, from_pretrained
from polyformer.errors import ConfigError, DataError, SequenceTooLongError
from polyformer.info import model_stats


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("jamba-tiny", vocab_size=50).eval()


def test_layout_and_interface(tiny):
    cfg = tiny.config
    assert cfg.layer_types == ["mamba", "mamba", "attention", "mamba"]
    assert cfg.layer_experts == [1, 4, 1, 4]
    ids = torch.randint(0, 50, (2, 17))
    out = tiny(ids, labels=ids)
    assert out.logits.shape == (2, 17, 50) and out.loss.ndim == 0 and out.aux_loss is not None
    ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, ce + 0.001 * out.aux_loss)  # labels shifted inside, aux loss added


@pytest.mark.parametrize("name", ["jamba-tiny", "mamba-tiny"])
def test_decoding_and_chunked_prefill_equal_full_forward(name):
    torch.manual_seed(0)
    model = create_model(name, scan_chunk=4).eval()
    ids = torch.randint(0, 256, (2, 29))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache()
        chunks = [model(ids[:, a:b], cache=cache).logits for a, b in ((0, 11), (11, 12), (12, 20), (20, 29))]
        assert torch.allclose(torch.cat(chunks, 1), full, atol=1e-5)
        cache = model.new_cache()
        steps = [model(ids[:, t : t + 1], cache=cache).logits for t in range(29)]
        assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
        assert cache.length == 29


def test_greedy_with_and_without_cache_and_left_padding(tiny):
    prompt = torch.randint(3, 50, (1, 9))
    a = tiny.generate(prompt, max_new_tokens=12)
    b = tiny.generate(prompt, max_new_tokens=12, use_cache=False)
    assert torch.equal(a, b)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), prompt], 1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 9, dtype=torch.long)], 1)
    c = tiny.generate(padded, max_new_tokens=12, attention_mask=mask)
    assert torch.equal(c[:, 4:], a)  # padding leaves no trace in the SSM state nor in attention
    s = tiny.generate(prompt, max_new_tokens=5, do_sample=True, top_k=5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (1, 14)


def test_mamba_decode_state_does_not_grow():
    model = create_model("mamba-tiny").eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, 256, (1, 50)), cache=cache)
        size = cache.nbytes()
        model(torch.randint(0, 256, (1, 200)), cache=cache)
    assert cache.nbytes() == size and size["kv"] == 0


def test_jamba_v01_counts_and_kv_cache():
    s = model_stats("jamba-v0.1", seq_len=262144, dtype="bfloat16")
    assert round(s.parameters / 1e9, 2) == 51.57 and round(s.active_parameters / 1e9, 2) == 12.11
    assert s.kv_cache_bytes == 4 * 2**30
    dense = model_stats("jamba-v0.1", seq_len=262144, dtype="bfloat16", attn_layer_period=1, attn_layer_offset=0)
    assert dense.kv_cache_bytes == 8 * s.kv_cache_bytes


def test_clear_errors(tiny):
    with pytest.raises(DataError, match=r"outside \[0, 50\)"):
        tiny(torch.tensor([[1, 2, 50]]))
    with pytest.raises(DataError, match="integer token ids"):
        tiny(torch.rand(1, 4))
    with pytest.raises(SequenceTooLongError):
        create_model("jamba-tiny", max_seq_len=8)(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ConfigError, match="attn_layer_offset"):
        create_model("jamba-tiny", attn_layer_period=4, attn_layer_offset=4)
    with pytest.raises(ConfigError, match="top_k"):
        create_model("jamba-tiny", top_k=5)


def test_save_and_load(tmp_path, tiny):
    tiny.save_pretrained(tmp_path / "j")
    again = from_pretrained(tmp_path / "j")
    ids = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        assert torch.equal(again(ids).logits, tiny(ids).logits)
    mamba = create_model("mamba-tiny")
    mamba.save_pretrained(tmp_path / "m")
    assert from_pretrained(tmp_path / "m").lm_head.weight is not None


def test_trains_with_the_trainer_on_text(tmp_path):
    from polyformer.train import TrainConfig, train

    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    cfg = TrainConfig(
        model="jamba-tiny",
        task="char_lm",
        data={"path": str(tmp_path / "t.txt"), "block_size": 64},
        out_dir=str(tmp_path / "run"),
        max_steps=30,
        batch_size=8,
        lr=3e-3,
        warmup_steps=3,
        eval_interval=30,
        eval_iters=2,
        progress=False,
    )
    r = train(cfg)
    assert r["val_loss"] < 2.5, r["val_loss"]  # from ln(28) = 3.3 at chance
    with pytest.raises(ConfigError, match="block_size"):
        train(cfg.replace(data={"path": str(tmp_path / "t.txt"), "block_size": 10**6}, out_dir=str(tmp_path / "x")))


def test_ssm_parameters_are_not_weight_decayed():
    from polyformer.train import param_groups

    model = create_model("jamba-tiny")
    decayed = {id(p) for p in param_groups(model, 0.1)[0]["params"]}
    mixer = model.layers[0].mamba
    assert id(mixer.A_log) not in decayed and id(mixer.D) not in decayed
    assert id(mixer.in_proj.weight) in decayed
