"""Hyena: the safari operator's names, count and outputs; causality; streaming; the models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from polyformer import create_model, from_pretrained
from polyformer.errors import DataError, SequenceTooLongError
from polyformer.interop import from_safari
from polyformer.layers.hyena import HyenaOperator, HyenaState

SAFARI_NAMES = {
    "in_proj.weight",
    "in_proj.bias",
    "out_proj.weight",
    "out_proj.bias",
    "short_filter.weight",
    "short_filter.bias",
    "filter_fn.bias",
    "filter_fn.pos_emb.z",
    "filter_fn.pos_emb.t",
    "filter_fn.implicit_filter.0.weight",
    "filter_fn.implicit_filter.0.bias",
    "filter_fn.implicit_filter.1.freq",
    "filter_fn.implicit_filter.2.weight",
    "filter_fn.implicit_filter.2.bias",
    "filter_fn.implicit_filter.3.freq",
    "filter_fn.implicit_filter.4.weight",
    "filter_fn.implicit_filter.4.bias",
    "filter_fn.implicit_filter.5.freq",
    "filter_fn.implicit_filter.6.weight",
    "filter_fn.modulation.deltas",
}


def _safari_like(d=512, l_max=1024):
    return HyenaOperator(
        d, l_max, order=2, filter_order=64, emb_dim=3, trainable_pos=True, shared_sin=True, pos_freqs="safari"
    )


def test_safari_names_and_parameter_count():
    op = _safari_like()
    assert set(op.state_dict()) == SAFARI_NAMES
    assert sum(p.numel() for p in op.parameters()) == 1_101_760
    ours = HyenaOperator(512, 1024, order=2, filter_order=64, emb_dim=3)  # our defaults: no table, own sines
    assert sum(p.numel() for p in ours.parameters()) == 1_101_760 - 3072 + 2 * 64


def _safari_reference(state: dict, u: torch.Tensor, order: int = 2) -> torch.Tensor:
    """safari's HyenaOperator.forward and fftconv_ref, written from their definitions."""
    d = state["out_proj.weight"].shape[0]
    L = u.shape[1]
    z = F.linear(u, state["in_proj.weight"], state["in_proj.bias"]).transpose(1, 2)
    w = state["short_filter.weight"]
    uc = F.conv1d(z, w, state["short_filter.bias"], padding=w.shape[-1] - 1, groups=z.shape[1])[..., :L]
    *x, v = uc.split(d, dim=1)
    pe, t = state["filter_fn.pos_emb.z"][:, :L], state["filter_fn.pos_emb.t"][:, :L]
    h = pe
    for i in range(0, 7, 2):
        h = F.linear(
            h, state[f"filter_fn.implicit_filter.{i}.weight"], state.get(f"filter_fn.implicit_filter.{i}.bias")
        )
        if i < 6:
            h = torch.sin(state[f"filter_fn.implicit_filter.{i + 1}.freq"] * h)
    h = h * torch.exp(-t * state["filter_fn.modulation.deltas"].abs())
    k = h[0].transpose(0, 1).reshape(order - 1, d, L)
    bias = state["filter_fn.bias"].reshape(order - 1, d)
    for o, x_i in enumerate(reversed(x[1:])):
        v = v * x_i
        n = 2 * L
        k_f = torch.fft.rfft(k[o], n=n) / n
        y = torch.fft.irfft(torch.fft.rfft(v, n=n) * k_f, n=n, norm="forward")[..., :L]
        v = y + v * bias[o][:, None]
    return F.linear((v * x[0]).transpose(1, 2), state["out_proj.weight"], state["out_proj.bias"])


def test_safari_state_dict_loads_and_computes_the_same(tmp_path):
    torch.manual_seed(0)
    src = _safari_like(d=32, l_max=128).double()
    state = {k: v.clone() for k, v in src.state_dict().items()}
    state["filter_fn.pos_emb.z"] += 0.1 * torch.randn_like(state["filter_fn.pos_emb.z"])  # a trained table
    for i in (1, 3, 5):
        state[f"filter_fn.implicit_filter.{i}.freq"] = torch.full((1, 64), 1.7, dtype=torch.float64)
    torch.save(state, tmp_path / "op.pt")
    op = from_safari(tmp_path / "op.pt")
    assert op.l_max == 128 and op.order == 2 and op.filter_fn.pos_emb.trainable
    u = torch.randn(2, 100, 32, dtype=torch.float64)
    assert (op(u) - _safari_reference(state, u)).abs().max() < 1e-10
    with pytest.raises(SequenceTooLongError, match="l_max=128"):
        op(torch.randn(1, 129, 32, dtype=torch.float64))


def test_longer_than_l_max_works_with_computed_positions():
    op = HyenaOperator(16, 32, emb_dim=5).double()
    u = torch.randn(1, 80, 16, dtype=torch.float64)
    y = op(u)
    assert y.shape == (1, 80, 16)
    assert torch.allclose(op(u[:, :20]), y[:, :20], atol=1e-12)  # the first outputs ignore the length


@pytest.mark.parametrize("order", [2, 3])
def test_operator_causal_by_gradient(order):
    torch.manual_seed(0)
    op = HyenaOperator(8, 64, order=order, emb_dim=5).double()
    u = torch.randn(1, 50, 8, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(op(u)[:, 20].sum(), u)
    assert g[:, 21:].abs().max() < 1e-12 and g[:, :21].abs().max() > 1e-6


def test_lm_causal_and_streaming_equals_full_forward():
    torch.manual_seed(0)
    lm = create_model("hyena-tiny", order=3).double().eval()
    ids = torch.randint(0, 256, (2, 40))
    with torch.no_grad():
        full = lm(ids).logits
        cache = lm.new_cache()
        parts = [lm(ids[:, :12], cache=cache).logits]
        parts += [lm(ids[:, t : t + 1], cache=cache).logits for t in range(12, 30)]
        parts.append(lm(ids[:, 30:], cache=cache).logits)
    assert (torch.cat(parts, 1) - full).abs().max() < 1e-10
    emb = lm.embed(ids[:1]).detach().requires_grad_()
    x = emb
    for block in lm.blocks:
        x = block(x)
    (g,) = torch.autograd.grad(x[:, 25].sum(), emb)
    assert g[:, 26:].abs().max() < 1e-12
    a = lm.float().generate(ids[:, :7], max_new_tokens=10)
    assert torch.equal(a, lm.generate(ids[:, :7], max_new_tokens=10, use_cache=False))


def test_left_padding_leaves_no_trace():
    torch.manual_seed(0)
    lm = create_model("hyena-tiny").eval()
    ids = torch.randint(1, 256, (1, 12))
    padded = torch.cat([torch.zeros(1, 5, dtype=torch.long), ids], 1)
    mask = (padded != 0).long()
    with torch.no_grad():
        assert torch.allclose(lm(padded, attention_mask=mask).logits[:, 5:], lm(ids).logits, atol=1e-5)


def test_classifier_on_waveforms_and_errors(tmp_path):
    torch.manual_seed(0)
    clf = create_model("hyena-audio", n_layers=1)
    out = clf(torch.randn(3, 800), labels=torch.tensor([0, 3, 9]))
    assert out.logits.shape == (3, 10) and out.loss.ndim == 0
    with pytest.raises(DataError, match="multiple of patch_size=8"):
        clf(torch.randn(1, 801))
    with pytest.raises(DataError, match="real-valued"):
        clf(torch.zeros(1, 800, dtype=torch.long))
    # padding: a clip padded with zeros and masked gives the same prediction as the clip alone
    clip = torch.randn(1, 400)
    padded, mask = F.pad(clip, (0, 400)), torch.cat([torch.ones(1, 400), torch.zeros(1, 400)], 1)
    clf.eval()
    assert torch.allclose(clf(padded, attention_mask=mask).logits, clf(clip).logits, atol=1e-5)
    clf.save_pretrained(tmp_path / "c")
    assert torch.equal(from_pretrained(tmp_path / "c")(clip).logits, clf(clip).logits)


def test_streaming_state_holds_the_inputs():
    op = HyenaOperator(8, 64).eval()
    st = HyenaState()
    with torch.no_grad():
        op(torch.randn(1, 10, 8), cache=st)
        op(torch.randn(1, 1, 8), cache=st)
    assert st.length == 11 and st.inputs[0].shape == (1, 8, 11) and st.conv.shape == (1, 24, 2)


def test_trainer_tasks_associative_recall_and_audio(tmp_path):
    import wave

    import numpy as np

    from polyformer.train import TrainConfig, train

    base = dict(out_dir=str(tmp_path / "ar"), max_steps=4, batch_size=8, eval_interval=4, progress=False)
    r = train(
        TrainConfig(
            model="hyena-tiny",
            task="associative_recall",
            data={"vocab_size": 10, "seq_len": 16, "n_train": 64, "n_test": 16},
            **base,
        )
    )
    assert r["model"].config.vocab_size == 10 and 0 <= r["accuracy"] <= 1
    rng = np.random.default_rng(0)
    for digit in range(3):
        for take in (0, 1, 5, 6, 7):
            with wave.open(str(tmp_path / f"{digit}_ann_{take}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(rng.integers(-2000, 2000, 300 + 7 * take, dtype="<i2").tobytes())
    for features in ("waveform", "log_mel"):
        r = train(
            TrainConfig(
                model="hyena-audio",
                task="audio_classification",
                data={"path": str(tmp_path), "features": features},
                model_overrides={"n_layers": 1},
                **{**base, "out_dir": str(tmp_path / features)},
            )
        )
        assert r["model"].config.num_classes == 3 and 0 <= r["accuracy"] <= 1
