"""Our encoder-decoder stack against torch.nn.Transformer with the same weights.

Weight mapping (ours -> torch.nn.Transformer), for layer i:
  encoder.layers.i.self_attn.{q,k,v}_proj.{weight,bias} -> encoder.layers.i.self_attn.in_proj_{weight,bias}
                                                          rows [0:d], [d:2d], [2d:3d]
  encoder.layers.i.self_attn.out_proj.*                  -> encoder.layers.i.self_attn.out_proj.*
  encoder.layers.i.mlp.fc1.* / mlp.fc2.*                 -> encoder.layers.i.linear1.* / linear2.*
  encoder.layers.i.norm1.* / norm2.*                     -> encoder.layers.i.norm1.* / norm2.*
  decoder.layers.i.self_attn.*                           -> decoder.layers.i.self_attn.* (as above)
  decoder.layers.i.cross_attn.*                          -> decoder.layers.i.multihead_attn.* (as above)
  decoder.layers.i.mlp.fc1/fc2, norm1/2/3                -> decoder.layers.i.linear1/linear2, norm1/2/3
  encoder.norm.*, decoder.norm.*                         -> encoder.norm.*, decoder.norm.*
torch.nn.Transformer always adds a final LayerNorm to each stack, even post-LN; our post-LN model
gets the same with final_norm=True (the paper itself has none, our default).
"""

import torch
from torch import nn

from polyformer import get_config
from polyformer.layers import causal_mask
from polyformer.models.transformer import TransformerSeq2Seq


def _copy_attn(ours, theirs):
    d = ours.q_proj.weight.shape[0]
    w = theirs.in_proj_weight.detach()
    b = theirs.in_proj_bias.detach()
    for j, proj in enumerate((ours.q_proj, ours.k_proj, ours.v_proj)):
        proj.weight.data.copy_(w[j * d : (j + 1) * d])
        proj.bias.data.copy_(b[j * d : (j + 1) * d])
    ours.out_proj.load_state_dict(theirs.out_proj.state_dict())


def _copy_stack(model, ref):
    for ol, tl in zip(model.encoder.layers, ref.encoder.layers):
        _copy_attn(ol.self_attn, tl.self_attn)
        ol.mlp.fc1.load_state_dict(tl.linear1.state_dict())
        ol.mlp.fc2.load_state_dict(tl.linear2.state_dict())
        ol.norm1.load_state_dict(tl.norm1.state_dict())
        ol.norm2.load_state_dict(tl.norm2.state_dict())
    for ol, tl in zip(model.decoder.layers, ref.decoder.layers):
        _copy_attn(ol.self_attn, tl.self_attn)
        _copy_attn(ol.cross_attn, tl.multihead_attn)
        ol.mlp.fc1.load_state_dict(tl.linear1.state_dict())
        ol.mlp.fc2.load_state_dict(tl.linear2.state_dict())
        for k in ("norm1", "norm2", "norm3"):
            getattr(ol, k).load_state_dict(getattr(tl, k).state_dict())
    model.encoder.norm.load_state_dict(ref.encoder.norm.state_dict())
    model.decoder.norm.load_state_dict(ref.decoder.norm.state_dict())


def _pair(norm_first: bool):
    d, h, ff, n_enc, n_dec = 32, 4, 64, 2, 3
    cfg = get_config(
        "transformer-tiny",
        d_model=d,
        n_heads=h,
        d_ff=ff,
        n_layers=n_enc,
        n_decoder_layers=n_dec,
        dropout=0.0,
        norm_first=norm_first,
        final_norm=True,
    )
    ours = TransformerSeq2Seq(cfg).eval()
    ref = nn.Transformer(
        d_model=d,
        nhead=h,
        num_encoder_layers=n_enc,
        num_decoder_layers=n_dec,
        dim_feedforward=ff,
        dropout=0.0,
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    _copy_stack(ours, ref)
    return ours, ref


def test_post_ln_stack_matches_torch_transformer():
    ours, ref = _pair(norm_first=False)
    src, tgt = torch.randn(3, 7, 32), torch.randn(3, 5, 32)
    tgt_mask = ref.generate_square_subsequent_mask(5)
    with torch.no_grad():
        expected = ref(src, tgt, tgt_mask=tgt_mask, tgt_is_causal=True)
        memory = ours.encoder(src)
        got = ours.decoder(tgt, memory)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_pre_ln_and_padding_match_torch_transformer():
    ours, ref = _pair(norm_first=True)
    src, tgt = torch.randn(2, 6, 32), torch.randn(2, 4, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])  # second source padded
    with torch.no_grad():
        expected = ref(
            src,
            tgt,
            tgt_mask=ref.generate_square_subsequent_mask(4),
            tgt_is_causal=True,
            src_key_padding_mask=pad,
            memory_key_padding_mask=pad,
        )
        keep = (~pad)[:, None, None, :]
        memory = ours.encoder(src, mask=keep)
        got = ours.decoder(tgt, memory, memory_mask=keep)
    # torch's encoder fast path may zero padded memory rows; they are masked out for the decoder.
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_causal_mask_is_bottom_right_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
