import pytest
import torch

import polyformer
from polyformer import ConfigError, SequenceTooLongError, create_model, from_pretrained
from polyformer.data import BPETokenizer, ByteTokenizer, CharTokenizer


# ---------------------------------------------------------------------------------- causality
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_output_has_zero_gradient_wrt_future_inputs(norm_first):
    model = create_model("transformer-tiny", dropout=0.0, norm_first=norm_first).double().eval()
    memory = torch.randn(1, 5, 64, dtype=torch.float64)
    tgt = torch.randn(1, 6, 64, dtype=torch.float64, requires_grad=True)
    out = model.decoder(tgt, memory)
    w = torch.randn(64, dtype=torch.float64)  # a plain sum of a LayerNorm output is constant
    for i in range(6):
        (g,) = torch.autograd.grad(out[0, i] @ w, tgt, retain_graph=True)
        assert torch.count_nonzero(g[0, i + 1 :]) == 0, f"output {i} depends on a future input"
        assert torch.count_nonzero(g[0, : i + 1]) > 0


def test_lm_is_causal_through_the_embedding():
    model = create_model("lm-tiny", vocab_size=50, n_layers=2).double().eval()
    x = model.embed.token.weight.new_zeros(1, 8, 128).normal_().requires_grad_(True)
    out = model.lm_head(model.blocks(x, is_causal=True))
    for i in range(8):
        (g,) = torch.autograd.grad(out[0, i].sum(), x, retain_graph=True)
        assert torch.count_nonzero(g[0, i + 1 :]) == 0
        assert torch.count_nonzero(g[0, : i + 1]) > 0


# ---------------------------------------------------------------------------------- KV cache
def test_lm_incremental_decoding_matches_full_recompute():
    model = create_model("lm-tiny", vocab_size=97, n_kv_heads=2).eval()
    prompt = torch.randint(0, 97, (3, 7))
    cached = model.generate(prompt, 20, use_cache=True)
    full = model.generate(prompt, 20, use_cache=False)
    assert torch.equal(cached, full)
    # logits: step by step on the cache versus one full forward over the same tokens
    cache = model.new_cache()
    step_logits = [model(cached[:, :7], cache=cache).logits]
    for t in range(7, cached.shape[1]):
        step_logits.append(model(cached[:, t : t + 1], cache=cache).logits)
    step_logits = torch.cat(step_logits, 1)
    full_logits = model(cached).logits
    assert torch.allclose(step_logits, full_logits, atol=1e-5)


def test_lm_chunked_prefill_with_left_padding():
    model = create_model("lm-tiny", vocab_size=50).eval()
    ids = torch.randint(3, 50, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding on row 1
    full = model(ids, attention_mask=mask).logits
    cache = model.new_cache()
    a = model(ids[:, :6], attention_mask=mask[:, :6], cache=cache).logits
    b = model(ids[:, 6:], attention_mask=mask[:, 6:], cache=cache).logits
    got = torch.cat([a, b], 1)
    assert torch.allclose(got[0], full[0], atol=1e-5)
    assert torch.allclose(got[1, 3:], full[1, 3:], atol=1e-5)


def test_seq2seq_cached_decoding_matches_recompute():
    model = create_model("transformer-tiny", vocab_size=40).eval()
    src = torch.randint(3, 40, (2, 9))
    src[1, 6:] = 0  # padding
    out = model.generate(src, 12)
    # recompute: teacher-force the produced tokens and compare argmax at every step
    tgt = torch.cat([torch.full((2, 1), 1), out[:, :-1]], 1)
    full = model(src, tgt).logits
    cache, memory = model.new_cache(src)
    steps = []
    for t in range(tgt.shape[1]):
        steps.append(model.decode(tgt[:, t : t + 1], memory if t == 0 else None, cache.memory_mask, cache=cache))
    steps = torch.cat(steps, 1)
    assert torch.allclose(steps, full, atol=1e-5)
    for i in range(2):
        n = int((out[i] != 0).sum())  # tokens up to padding
        assert torch.equal(full[i, :n].argmax(-1), out[i, :n])


def test_beam_size_one_equals_greedy():
    model = create_model("transformer-tiny", vocab_size=30).eval()
    src = torch.randint(3, 30, (4, 8))
    greedy = model.generate(src, 15, num_beams=1)
    beam1 = polyformer.generation.beam_search(model, src, 1, 15)
    assert torch.equal(greedy[:, : beam1.shape[1]], beam1)
    assert (greedy[:, beam1.shape[1] :] == 0).all()


def test_beam_search_is_no_worse_than_greedy_in_model_score():
    model = create_model("transformer-tiny", vocab_size=12).eval()
    src = torch.randint(3, 12, (3, 6))

    def score(out):
        tgt = torch.cat([torch.full((out.shape[0], 1), 1), out[:, :-1]], 1)
        logp = model(src, tgt).logits.log_softmax(-1).gather(-1, out[..., None]).squeeze(-1)
        keep = torch.ones_like(out, dtype=torch.bool)
        keep[:, 1:] = out[:, :-1] != 2  # up to and including the first EOS
        keep = keep.cumprod(1).bool()
        return (logp * keep).sum(1)

    greedy = model.generate(src, 10)
    beam = model.generate(src, 10, num_beams=4, length_penalty=0.0)
    assert (score(beam) >= score(greedy) - 1e-5).all()


def test_sampling_is_reproducible_and_respects_top_k():
    model = create_model("lm-tiny", vocab_size=50).eval()
    p = torch.randint(0, 50, (2, 4))
    a = model.generate(p, 10, do_sample=True, top_k=1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, model.generate(p, 10))  # top_k=1 is greedy
    b = model.generate(p, 10, do_sample=True, top_p=0.8, temperature=0.7, generator=torch.Generator().manual_seed(3))
    c = model.generate(p, 10, do_sample=True, top_p=0.8, temperature=0.7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(b, c)


def test_filter_logits_top_p_keeps_nucleus():
    from polyformer.generation import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=3))
    assert kept.tolist() == [[True, True, True, False]]


# ---------------------------------------------------------------------------------- sizes
def test_transformer_base_has_the_papers_parameter_count():
    # Paper: ~65M parameters for the base model with the shared EN-DE BPE vocabulary of ~37,000
    # tokens (tied source/target embedding and output projection). Ours with vocab_size=37000: 63.08M.
    with torch.device("meta"):
        model = create_model("transformer-base")
    n = model.num_parameters()
    assert model.config.vocab_size == 37000
    assert abs(n - 65e6) / 65e6 < 0.05, n


def test_transformer_big_parameter_count():
    with torch.device("meta"):
        n = create_model("transformer-big").num_parameters()
    assert abs(n - 213e6) / 213e6 < 0.05, n


# ---------------------------------------------------------------------------------- API errors
def test_config_validation_names_field_and_range():
    with pytest.raises(ConfigError, match="n_heads"):
        create_model("transformer-tiny", n_heads=5)
    with pytest.raises(ConfigError, match="dropout.*\\[0, 1\\)"):
        create_model("transformer-tiny", dropout=1.5)
    with pytest.raises(ConfigError, match="unknown config key 'd_modle'.*d_model"):
        create_model("transformer-tiny", d_modle=3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(polyformer.UnknownModelError, match="transformer-tiny"):
        create_model("transfomer-tiny")


def test_too_long_sequence_is_a_clear_error():
    model = create_model("lm-tiny")
    with pytest.raises(SequenceTooLongError, match="max_seq_len=64"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(SequenceTooLongError):
        model.generate(torch.zeros(1, 60, dtype=torch.long), 10)


def test_out_of_range_token_is_a_clear_error():
    model = create_model("lm-tiny", vocab_size=10)
    with pytest.raises(polyformer.DataError, match=r"\[0, 10\)"):
        model(torch.tensor([[3, 12]]))


# ---------------------------------------------------------------------------------- interface
@pytest.mark.parametrize("name", ["transformer-tiny", "lm-tiny", "transformer-classifier-tiny"])
def test_uniform_interface_and_loss(name):
    model = create_model(name)
    assert model.config.d_model > 0 and model.config.n_layers > 0
    ids = torch.randint(3, 50, (2, 6))
    if name.startswith("transformer-tiny"):
        out = model(ids, ids, labels=ids)
    elif name.startswith("lm"):
        out = model(ids, labels=ids)
    else:
        out = model(ids, labels=torch.tensor([0, 1]))
    assert out.loss is not None and out.loss.ndim == 0
    out.loss.backward()


def test_lm_labels_are_shifted_inside():
    model = create_model("lm-tiny", vocab_size=20).eval()
    ids = torch.randint(0, 20, (2, 9))
    logits = model(ids).logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 20), ids[:, 1:].reshape(-1))
    assert torch.allclose(model(ids, labels=ids).loss, expected)


def test_label_smoothing_matches_definition():
    model = create_model("transformer-tiny", vocab_size=16, label_smoothing=0.1).eval()
    src, tgt, lab = torch.randint(3, 16, (2, 5)), torch.randint(3, 16, (2, 4)), torch.randint(3, 16, (2, 4))
    out = model(src, tgt, labels=lab)
    logp = out.logits.log_softmax(-1)
    nll = -logp.gather(-1, lab[..., None]).mean()
    uniform = -logp.mean()
    assert torch.allclose(out.loss, 0.9 * nll + 0.1 * uniform, atol=1e-6)


# ---------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("tok", ["byte", "char", "bpe"])
def test_save_load_round_trip_is_bit_exact(tmp_path, tok):
    if tok == "byte":
        tokenizer = ByteTokenizer()
    elif tok == "char":
        tokenizer = CharTokenizer.from_text("hello world")
    else:
        tokenizer = BPETokenizer.train(["a cat sat on the mat", "the dog sat on a log"] * 20, vocab_size=300)
    model = create_model("transformer-tiny", vocab_size=max(tokenizer.vocab_size, 16))
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    loaded = from_pretrained(tmp_path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.tgt_embed.token.weight  # tying survives
    text = "the cat sat" if tok == "bpe" else "hello"
    assert loaded.tokenizer.to_dict() == tokenizer.to_dict()
    assert loaded.tokenizer.encode(text) == tokenizer.encode(text)
    assert loaded.tokenizer.decode(tokenizer.encode(text)) == text
    model.eval()
    src = torch.randint(3, 16, (2, 5))
    assert torch.equal(model(src, src).logits, loaded(src, src).logits)


def test_corrupt_or_missing_checkpoint_errors(tmp_path):
    with pytest.raises(polyformer.CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nope")
    model = create_model("transformer-tiny")
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(polyformer.CheckpointError, match="corrupt weights"):
        from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(polyformer.CheckpointError, match="missing weights"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(polyformer.CheckpointError, match="not valid JSON"):
        from_pretrained(tmp_path)


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path):
    create_model("transformer-tiny").save_pretrained(tmp_path)
    import json

    meta = json.loads((tmp_path / "config.json").read_text())
    meta["config"]["d_ff"] = 128
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(polyformer.CheckpointError, match="shape"):
        from_pretrained(tmp_path)
