"""Parity with transformers.JambaForCausalLM and MambaForCausalLM (random tiny configs, fp32)."""

from __future__ import annotations

import pytest
import torch

from polyformer.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")


def _tiny_jamba(tmp_path):
    """4 layers: attention at 1 and 3 (dense MLPs), Mamba at 0 and 2 (4 experts, top-2)."""
    torch.manual_seed(0)
    cfg = transformers.JambaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_layer_period=2,
        attn_layer_offset=1,
        expert_layer_period=2,
        expert_layer_offset=0,
        num_experts=4,
        num_experts_per_tok=2,
        mamba_d_state=8,
        mamba_d_conv=4,
        mamba_expand=2,
        use_mamba_kernels=False,
        pad_token_id=0,
    )
    hf = transformers.JambaForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises dt_proj.bias to zero and D to one: perturb what init leaves flat
        for name, p in hf.named_parameters():
            if name.endswith(("dt_proj.bias", ".D", "layernorm.weight")):
                p.add_(0.3 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "hf")
    return hf


def _ids(b=2, t=24, vocab=64):
    return torch.randint(3, vocab, (b, t), generator=torch.Generator().manual_seed(1))


def test_jamba_logits_aux_loss_and_layout(tmp_path):
    hf = _tiny_jamba(tmp_path)
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert cfg.layer_types == ["mamba", "attention", "mamba", "attention"] and cfg.layer_experts == [4, 1, 4, 1]
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids, labels=ids, output_router_logits=True)
        out = ours(ids, labels=ids)
    assert torch.allclose(out.logits, ref.logits, atol=1e-4), (out.logits - ref.logits).abs().max()
    assert torch.allclose(out.aux_loss, ref.aux_loss, atol=1e-5), (out.aux_loss, ref.aux_loss)
    assert torch.allclose(out.loss, ref.loss, atol=1e-5), (out.loss, ref.loss)


def test_jamba_fused_expert_layout_and_round_trip(tmp_path):
    from safetensors.torch import save_file

    hf = _tiny_jamba(tmp_path)
    # the 5.x in-memory layout: experts fused into gate_up_proj [E, 2F, H] and down_proj [E, H, F]
    fused = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in fused)
    (tmp_path / "fused").mkdir()
    save_file(fused, str(tmp_path / "fused" / "model.safetensors"))
    (tmp_path / "fused" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    ours = from_hf(tmp_path / "fused")
    to_hf(ours, tmp_path / "back")
    again = transformers.JambaForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids).logits
        assert torch.allclose(ours(ids).logits, ref, atol=1e-4)
        assert torch.allclose(again(ids).logits, ref, atol=1e-5)


def test_jamba_greedy_continuation_matches(tmp_path):
    hf = _tiny_jamba(tmp_path)
    ours = from_hf(tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ids = _ids(b=1, t=10)
    with torch.no_grad():
        ref = hf.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
    got = ours.generate(ids, max_new_tokens=32)
    assert ref.shape == got.shape == (1, 42)
    assert torch.equal(got, ref), (got, ref)


def _tiny_mamba(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, state_size=8, expand=2)
    hf = transformers.MambaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    return hf


def test_mamba_logits_greedy_and_round_trip(tmp_path):
    hf = _tiny_mamba(tmp_path)
    ours = from_hf(tmp_path / "hf")
    assert ours.config.tie_embeddings and ours.lm_head.weight is ours.embed_tokens.weight
    ids = _ids()
    with torch.no_grad():
        ref = hf(ids).logits
        assert torch.allclose(ours(ids).logits, ref, atol=1e-4), (ours(ids).logits - ref).abs().max()
        hf.generation_config.eos_token_id = None
        prompt = ids[:1, :10]
        want = hf.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, max_new_tokens=32), want)
    to_hf(ours, tmp_path / "back")
    again = transformers.MambaForCausalLM.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, ref, atol=1e-5)
