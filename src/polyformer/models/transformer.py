"""The Transformer (Vaswani et al. 2017, "Attention Is All You Need", arXiv 1706.03762).

Three models from one set of blocks:

* ``TransformerSeq2Seq`` - the paper's encoder-decoder. Encoder layer (post-LN, sec. 3.1):
      x = LN(x + Dropout(SelfAttn(x)))
      x = LN(x + Dropout(FFN(x)))
  Decoder layer adds masked (causal) self-attention and encoder-decoder attention:
      y = LN(y + Dropout(CausalSelfAttn(y)))
      y = LN(y + Dropout(CrossAttn(y, memory)))
      y = LN(y + Dropout(FFN(y)))
  ``norm_first=True`` gives the pre-LN variant x = x + Dropout(Sublayer(LN(x))) (Xiong et al. 2020),
  which then needs a final LN on each stack. Inputs are Embedding(ids) * sqrt(d_model) + PE,
  followed by dropout (sec. 3.4, 3.5). With a shared vocabulary the source embedding, target
  embedding and pre-softmax projection are one matrix. The loss is cross-entropy with label
  smoothing eps (sec. 5.4): (1 - eps) * NLL + eps * mean_v(-log p_v).
* ``TransformerLM`` - decoder-only causal language model (GPT / nanoGPT): pre-LN blocks of
  causal self-attention and MLP, learned positions, final LN, tied LM head.
* ``TransformerClassifier`` - encoder-only sequence classifier: encoder stack, masked mean
  (or first-token) pooling, linear head.

Masks follow ``layers.attention``: boolean, True = may attend. Padding is derived from
``pad_token_id`` (seq2seq) or an ``attention_mask`` of 1 = token, 0 = padding (LM, classifier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import BaseConfig, check, check_choice, check_positive_int, check_prob
from ..errors import DataError, SequenceTooLongError
from ..generation import lm_generate
from ..layers import KVCache, MultiHeadAttention, make_mlp, make_norm, make_positional
from ..layers.mlp import ACTIVATIONS
from ..modeling import ModelOutput, PolyModel
from ..registry import register_family, register_model

ARCHS = ("encoder-decoder", "decoder", "encoder")


# ------------------------------------------------------------------------------------------- config
@dataclass
class TransformerConfig(BaseConfig):
    """Config of every Transformer-family model; ``arch`` picks the model built from it."""

    family = "transformer"

    arch: str = "encoder-decoder"
    vocab_size: int = 37000  # target (or shared) vocabulary
    src_vocab_size: int | None = None  # encoder-decoder with separate vocabularies; None = shared
    d_model: int = 512
    n_layers: int = 6  # encoder layers; decoder layers for arch='decoder'
    n_decoder_layers: int | None = None  # encoder-decoder only; None = n_layers
    n_heads: int = 8
    n_kv_heads: int | None = None  # grouped-query attention; None = n_heads
    d_ff: int = 2048
    activation: str = "relu"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_first: bool = False  # False = post-LN as in the paper
    final_norm: bool | None = None  # LN after each stack; None = same as norm_first
    pos_encoding: str = "sinusoidal"
    max_seq_len: int = 512
    dropout: float = 0.1  # on embeddings and on each sublayer output ("residual dropout", sec. 5.4)
    attn_dropout: float = 0.0  # on attention weights
    ffn_dropout: float = 0.0  # inside the FFN, after the activation (torch.nn.Transformer uses `dropout`)
    bias: bool = True
    scale_embeddings: bool = True  # multiply token embeddings by sqrt(d_model)
    tie_embeddings: bool = True  # output projection = target embedding (and source, if shared vocab)
    label_smoothing: float = 0.0
    init: str = "xavier"  # 'xavier' (paper / torch.nn.Transformer) or 'gpt' (normal 0.02, scaled residuals)
    num_classes: int = 2  # arch='encoder'
    pooling: str = "mean"  # arch='encoder': 'mean' over tokens or 'first' token
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_positive_int("vocab_size", self.vocab_size)
        if self.src_vocab_size is not None:
            check_positive_int("src_vocab_size", self.src_vocab_size)
        check_positive_int("d_model", self.d_model)
        check_positive_int("n_layers", self.n_layers)
        if self.n_decoder_layers is not None:
            check_positive_int("n_decoder_layers", self.n_decoder_layers)
        check_positive_int("n_heads", self.n_heads)
        check(self.d_model % self.n_heads == 0, "n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        if self.n_kv_heads is not None:
            check_positive_int("n_kv_heads", self.n_kv_heads)
            check(
                self.n_heads % self.n_kv_heads == 0,
                "n_kv_heads",
                self.n_kv_heads,
                f"a divisor of n_heads={self.n_heads}",
            )
        check_positive_int("d_ff", self.d_ff)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("norm", self.norm, ("layernorm", "rmsnorm"))
        check(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")
        check_choice("pos_encoding", self.pos_encoding, ("sinusoidal", "learned", "none"))
        check_positive_int("max_seq_len", self.max_seq_len)
        check_prob("dropout", self.dropout)
        check_prob("attn_dropout", self.attn_dropout)
        check_prob("ffn_dropout", self.ffn_dropout)
        check_prob("label_smoothing", self.label_smoothing)
        check_choice("init", self.init, ("xavier", "gpt"))
        check_positive_int("num_classes", self.num_classes)
        check_choice("pooling", self.pooling, ("mean", "first"))
        for f in ("pad_token_id", "bos_token_id", "eos_token_id"):
            v = getattr(self, f)
            check(
                isinstance(v, int) and 0 <= v < self.vocab_size,
                f,
                v,
                f"an integer in [0, vocab_size={self.vocab_size})",
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def use_final_norm(self) -> bool:
        return self.norm_first if self.final_norm is None else self.final_norm

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers


# ------------------------------------------------------------------------------------------- blocks
class Embedder(nn.Module):
    """token embedding (* sqrt(d) if scaled) + positional encoding, then dropout."""

    def __init__(self, vocab_size: int, cfg: TransformerConfig, token: nn.Embedding | None = None):
        super().__init__()
        self.token = token if token is not None else nn.Embedding(vocab_size, cfg.d_model)
        self.pos = make_positional(cfg.pos_encoding, cfg.max_seq_len, cfg.d_model)
        self.scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        if ids.dim() != 2:
            raise DataError(f"token ids must be a 2-D [batch, length] tensor, got shape {tuple(ids.shape)}")
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise DataError(f"token ids must be an integer tensor, got {ids.dtype}")
        n = self.token.num_embeddings
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise DataError(
                f"token id out of range: ids must lie in [0, {n}), got min {int(ids.min())}, max {int(ids.max())}"
            )
        x = self.token(ids) * self.scale
        if self.pos is not None:
            x = x + self.pos(ids.shape[1], offset).to(x.dtype)
        return self.dropout(x)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.bias, cfg.attn_dropout)
        self.mlp = make_mlp(cfg.d_model, cfg.d_ff, cfg.activation, cfg.bias, cfg.ffn_dropout)
        self.norm1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, is_causal: bool = False, cache: KVCache | None = None
    ) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.self_attn(self.norm1(x), mask=mask, is_causal=is_causal, cache=cache))
            return x + self.dropout(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.self_attn(x, mask=mask, is_causal=is_causal, cache=cache)))
        return self.norm2(x + self.dropout(self.mlp(x)))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the encoder memory, FFN."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.bias, cfg.attn_dropout)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.bias, cfg.attn_dropout)
        self.mlp = make_mlp(cfg.d_model, cfg.d_ff, cfg.activation, cfg.bias, cfg.ffn_dropout)
        self.norm1 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.norm3 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, y, memory, self_mask=None, memory_mask=None, self_cache=None, cross_cache=None):
        d = self.dropout
        if self.norm_first:
            y = y + d(self.self_attn(self.norm1(y), mask=self_mask, is_causal=True, cache=self_cache))
            y = y + d(self.cross_attn(self.norm2(y), context=memory, mask=memory_mask, cache=cross_cache))
            return y + d(self.mlp(self.norm3(y)))
        y = self.norm1(y + d(self.self_attn(y, mask=self_mask, is_causal=True, cache=self_cache)))
        y = self.norm2(y + d(self.cross_attn(y, context=memory, mask=memory_mask, cache=cross_cache)))
        return self.norm3(y + d(self.mlp(y)))


class TransformerEncoder(nn.Module):
    """A stack of encoder layers on embedded inputs [B, S, d] (optionally causal: the LM)."""

    def __init__(self, cfg: TransformerConfig, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(n_layers))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if cfg.use_final_norm else None

    def forward(self, x, mask=None, is_causal=False, caches=None):
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, is_causal=is_causal, cache=None if caches is None else caches[i])
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(nn.Module):
    """A stack of decoder layers on embedded targets [B, T, d] attending to memory [B, S, d]."""

    def __init__(self, cfg: TransformerConfig, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(n_layers))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if cfg.use_final_norm else None

    def forward(self, y, memory, self_mask=None, memory_mask=None, cache: DecoderCache | None = None):
        for i, layer in enumerate(self.layers):
            sc = cc = None
            if cache is not None:
                sc, cc = cache.self_kv[i], cache.cross_kv[i]
            y = layer(y, memory, self_mask=self_mask, memory_mask=memory_mask, self_cache=sc, cross_cache=cc)
        return self.norm(y) if self.norm is not None else y


class DecoderCache:
    """Everything incremental decoding keeps: per-layer self-attention KV (growing), per-layer
    cross-attention KV (computed once from the memory), and the memory's attention mask."""

    def __init__(self, n_layers: int, cross: bool = False, memory_mask: torch.Tensor | None = None):
        self.self_kv = [KVCache() for _ in range(n_layers)]
        self.cross_kv = [KVCache(static=True) for _ in range(n_layers)] if cross else [None] * n_layers
        self.memory_mask = memory_mask
        self.pad_mask: torch.Tensor | None = None  # [B, length] True at padded prompt positions (LM)

    @property
    def length(self) -> int:
        return self.self_kv[0].length

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search, batch expansion)."""
        for c in self.self_kv:
            c.reorder(index)
        for c in self.cross_kv:
            if c is not None:
                c.reorder(index)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)
        if self.pad_mask is not None:
            self.pad_mask = self.pad_mask.index_select(0, index)


# ------------------------------------------------------------------------------------------- helpers
def _init_weights(model: nn.Module, cfg: TransformerConfig, n_residual_layers: int) -> None:
    if cfg.init == "xavier":
        # As torch.nn.Transformer: Xavier-uniform on every matrix. Embeddings use N(0, d^-1/2) so
        # that, scaled by sqrt(d), they start at unit scale (the tied output layer then starts small).
        for name, p in model.named_parameters():
            if p.dim() > 1:
                if "embed" in name and "token" in name:
                    nn.init.normal_(p, std=cfg.d_model**-0.5)
                elif "pos" not in name:
                    nn.init.xavier_uniform_(p)
        return
    # GPT-2 / nanoGPT: N(0, 0.02), residual output projections N(0, 0.02 / sqrt(2 L)), zero biases.
    for name, p in model.named_parameters():
        if p.dim() > 1:
            std = 0.02
            if name.endswith(("out_proj.weight", "fc2.weight", "down_proj.weight")):
                std = 0.02 / math.sqrt(2 * n_residual_layers)
            nn.init.normal_(p, std=std)
        elif name.endswith(".bias"):
            nn.init.zeros_(p)


def _check_ids(ids, name: str, max_len: int | None, vocab_size: int | None = None) -> None:
    if not isinstance(ids, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2:
        raise DataError(f"{name} must have shape [batch, length], got {tuple(ids.shape)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise DataError(f"{name} must hold integer token ids, got {ids.dtype}")
    if vocab_size is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise DataError(
            f"{name} holds ids outside [0, {vocab_size}) (min {int(ids.min())}, max {int(ids.max())}); "
            "the tokenizer does not match the model's vocab_size"
        )
    if max_len is not None and ids.shape[1] > max_len:
        raise SequenceTooLongError(
            f"{name} has length {ids.shape[1]}, longer than the model allows (max_seq_len={max_len}); "
            "truncate it or use a model with a larger max_seq_len"
        )


def lm_loss(logits, labels, attention_mask=None, shift_labels: bool = True, label_smoothing: float = 0.0):
    """Next-token cross-entropy of a causal LM (None without labels). Padding (attention_mask == 0) is
    ignored; with ``shift_labels`` position t is scored on labels[t + 1], as in Hugging Face."""
    if labels is None:
        return None
    if attention_mask is not None:
        labels = labels.masked_fill(attention_mask == 0, -100)
    if shift_labels:
        return cross_entropy(logits[:, :-1], labels[:, 1:], label_smoothing)
    return cross_entropy(logits, labels, label_smoothing)


class LMGenerateMixin:
    """``generate`` (:func:`polyformer.generation.lm_generate`, without autograd) for causal LMs that
    take ``model(ids, attention_mask=, cache=)`` and have ``new_cache()``."""

    generate = torch.no_grad()(lm_generate)


def cross_entropy(logits, labels, label_smoothing: float = 0.0, ignore_index: int = -100):
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


# ------------------------------------------------------------------------------------------- models
class TransformerSeq2Seq(PolyModel):
    """Encoder-decoder Transformer: ``model(src_ids, tgt_ids, labels=None)``.

    ``tgt_ids`` are the decoder inputs (starting with BOS) and ``labels`` the next tokens at each
    position (ending with EOS); positions equal to ``pad_token_id`` or -100 in ``labels`` are ignored.
    Given only ``labels``, ``tgt_ids`` is built by shifting them right behind BOS.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        shared = cfg.src_vocab_size is None
        self.tgt_embed = Embedder(cfg.vocab_size, cfg)
        self.src_embed = (
            Embedder(cfg.vocab_size, cfg, token=self.tgt_embed.token) if shared else Embedder(cfg.src_vocab_size, cfg)
        )
        self.encoder = TransformerEncoder(cfg, cfg.n_layers)
        self.decoder = TransformerDecoder(cfg, cfg.decoder_layers)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _init_weights(self, cfg, cfg.n_layers + cfg.decoder_layers)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tgt_embed.token.weight

    def encode(self, src_ids: torch.Tensor):
        """-> (memory [B, S, d], memory_mask [B, 1, 1, S] True = real token)."""
        _check_ids(src_ids, "src_ids", self.config.max_seq_len)
        keep = src_ids != self.config.pad_token_id
        mask = keep[:, None, None, :]
        memory = self.encoder(self.src_embed(src_ids), mask=mask)
        return memory, mask

    def decode(self, tgt_ids, memory, memory_mask, cache: DecoderCache | None = None):
        offset = cache.length if cache is not None else 0
        if offset + tgt_ids.shape[1] > self.config.max_seq_len:
            raise SequenceTooLongError(
                f"target length {offset + tgt_ids.shape[1]} exceeds max_seq_len={self.config.max_seq_len}"
            )
        y = self.tgt_embed(tgt_ids, offset=offset)
        h = self.decoder(y, memory, memory_mask=memory_mask, cache=cache)
        return self.lm_head(h)

    def forward(self, src_ids, tgt_ids=None, labels=None, cache: DecoderCache | None = None) -> ModelOutput:
        cfg = self.config
        if tgt_ids is None:
            if labels is None:
                raise DataError("TransformerSeq2Seq needs tgt_ids, labels, or both")
            tgt_ids = labels.new_full(labels.shape, cfg.pad_token_id)
            tgt_ids[:, 0] = cfg.bos_token_id
            tgt_ids[:, 1:] = labels[:, :-1].clamp_min(0)
        _check_ids(tgt_ids, "tgt_ids", cfg.max_seq_len)
        if cache is not None and cache.cross_kv[0] is not None and cache.cross_kv[0].k is not None:
            memory, memory_mask = None, cache.memory_mask
        else:
            memory, memory_mask = self.encode(src_ids)
            if cache is not None:
                cache.memory_mask = memory_mask
        logits = self.decode(tgt_ids, memory, memory_mask, cache=cache)
        loss = None
        if labels is not None:
            labels = labels.masked_fill(labels == cfg.pad_token_id, -100)
            loss = cross_entropy(logits, labels, cfg.label_smoothing)
        return ModelOutput(logits=logits, loss=loss, cache=cache)

    def new_cache(self, src_ids: torch.Tensor) -> tuple[DecoderCache, torch.Tensor]:
        """Encode the source once; returns a cache whose cross-attention KV is filled on first use."""
        memory, mask = self.encode(src_ids)
        return DecoderCache(self.config.decoder_layers, cross=True, memory_mask=mask), memory

    @torch.no_grad()
    def generate(
        self,
        input_ids,
        max_new_tokens: int = 64,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Decode targets for source ``input_ids`` [B, S] -> [B, T] (no BOS; EOS then padding).

        ``num_beams > 1`` runs beam search with score / length**length_penalty; otherwise greedy,
        or sampling with ``do_sample`` (temperature, top-k, top-p)."""
        from ..generation import seq2seq_generate

        return seq2seq_generate(
            self, input_ids, max_new_tokens, num_beams, length_penalty, do_sample, temperature, top_k, top_p, generator
        )


class TransformerLM(LMGenerateMixin, PolyModel):
    """Decoder-only causal LM: ``model(input_ids, labels=None, attention_mask=None)``.

    ``labels`` are aligned with ``input_ids`` and shifted inside (position t predicts labels[t+1]),
    as in Hugging Face; pass ``shift_labels=False`` when labels are already next tokens."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = Embedder(cfg.vocab_size, cfg)
        self.blocks = TransformerEncoder(cfg, cfg.n_layers)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        _init_weights(self, cfg, cfg.n_layers)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.token.weight

    def new_cache(self) -> DecoderCache:
        return DecoderCache(self.config.n_layers)

    def forward(
        self, input_ids, labels=None, attention_mask=None, cache: DecoderCache | None = None, shift_labels: bool = True
    ) -> ModelOutput:
        cfg = self.config
        offset = cache.length if cache is not None else 0
        _check_ids(input_ids, "input_ids", cfg.max_seq_len)
        if offset + input_ids.shape[1] > cfg.max_seq_len:
            raise SequenceTooLongError(
                f"{offset} cached + {input_ids.shape[1]} new tokens exceed the model's max_seq_len={cfg.max_seq_len}"
            )
        mask = None
        if attention_mask is not None:
            pad = attention_mask == 0
            if cache is not None:
                cache.pad_mask = pad if cache.pad_mask is None else torch.cat([cache.pad_mask, pad], 1)
                pad = cache.pad_mask
            mask = (~pad)[:, None, None, :]
        elif cache is not None and cache.pad_mask is not None:
            cache.pad_mask = F.pad(cache.pad_mask, (0, input_ids.shape[1]), value=False)
            mask = (~cache.pad_mask)[:, None, None, :]
        x = self.embed(input_ids, offset=offset)
        h = self.blocks(x, mask=mask, is_causal=True, caches=None if cache is None else cache.self_kv)
        logits = self.lm_head(h)
        loss = lm_loss(logits, labels, attention_mask, shift_labels, cfg.label_smoothing)
        return ModelOutput(logits=logits, loss=loss, cache=cache)


class TransformerClassifier(PolyModel):
    """Encoder-only classifier: ``model(input_ids, labels=None, attention_mask=None)``."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        self.embed = Embedder(cfg.vocab_size, cfg)
        self.encoder = TransformerEncoder(cfg, cfg.n_layers)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        _init_weights(self, cfg, cfg.n_layers)

    def forward(self, input_ids, labels=None, attention_mask=None) -> ModelOutput:
        cfg = self.config
        _check_ids(input_ids, "input_ids", cfg.max_seq_len)
        keep = (input_ids != cfg.pad_token_id) if attention_mask is None else attention_mask.bool()
        h = self.encoder(self.embed(input_ids), mask=keep[:, None, None, :])
        if cfg.pooling == "first":
            pooled = h[:, 0]
        else:
            w = keep.unsqueeze(-1).to(h.dtype)
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        logits = self.head(pooled)
        loss = cross_entropy(logits, labels, cfg.label_smoothing) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, hidden_states=h)


def build(config: TransformerConfig) -> PolyModel:
    return {"encoder-decoder": TransformerSeq2Seq, "decoder": TransformerLM, "encoder": TransformerClassifier}[
        config.arch
    ](config)


register_family("transformer", TransformerConfig, build)

# ------------------------------------------------------------------------------------------- presets
# The paper's sizes (Table 3). Vocabulary: the shared EN-DE BPE of about 37,000 tokens (sec. 5.1).
register_model(
    "transformer-base",
    "transformer",
    "Vaswani et al. base: 6+6 layers, d=512, ~63M params",
    d_model=512,
    n_layers=6,
    n_heads=8,
    d_ff=2048,
    dropout=0.1,
    label_smoothing=0.1,
)
register_model(
    "transformer-big",
    "transformer",
    "Vaswani et al. big: 6+6 layers, d=1024, ~213M params",
    d_model=1024,
    n_layers=6,
    n_heads=16,
    d_ff=4096,
    dropout=0.3,
    label_smoothing=0.1,
)
register_model(
    "transformer-small",
    "transformer",
    "CPU-sized encoder-decoder (Multi30k scale)",
    vocab_size=8000,
    d_model=256,
    n_layers=3,
    n_heads=4,
    d_ff=1024,
    dropout=0.1,
    label_smoothing=0.1,
    max_seq_len=256,
)
register_model(
    "transformer-tiny",
    "transformer",
    "toy encoder-decoder for synthetic tasks and tests",
    vocab_size=64,
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=256,
    dropout=0.0,
    max_seq_len=128,
)

_LM = dict(
    arch="decoder",
    norm_first=True,
    pos_encoding="learned",
    activation="gelu",
    bias=False,
    scale_embeddings=False,
    init="gpt",
    dropout=0.0,
)
register_model(
    "lm-tiny",
    "transformer",
    "nanoGPT CPU 'baby' shape: 4 layers, 4 heads, d=128, context 64",
    **_LM,
    vocab_size=256,
    d_model=128,
    n_layers=4,
    n_heads=4,
    d_ff=512,
    max_seq_len=64,
)
register_model(
    "lm-small",
    "transformer",
    "nanoGPT shakespeare_char shape: 6 layers, 6 heads, d=384",
    **{**_LM, "dropout": 0.2},
    vocab_size=256,
    d_model=384,
    n_layers=6,
    n_heads=6,
    d_ff=1536,
    max_seq_len=256,
)
register_model(
    "lm-gpt2",
    "transformer",
    "GPT-2 small shape (124M): 12 layers, 12 heads, d=768",
    **_LM,
    vocab_size=50257,
    d_model=768,
    n_layers=12,
    n_heads=12,
    d_ff=3072,
    max_seq_len=1024,
)

_CLS = dict(
    arch="encoder",
    norm_first=True,
    pos_encoding="learned",
    activation="gelu",
    scale_embeddings=False,
    init="gpt",
    dropout=0.1,
)
register_model(
    "transformer-classifier-tiny",
    "transformer",
    "encoder-only classifier, 2 layers, d=64",
    **_CLS,
    vocab_size=259,
    d_model=64,
    n_layers=2,
    n_heads=4,
    d_ff=256,
    max_seq_len=256,
)
register_model(
    "transformer-classifier-small",
    "transformer",
    "encoder-only classifier, 4 layers, d=256",
    **_CLS,
    vocab_size=259,
    d_model=256,
    n_layers=4,
    n_heads=4,
    d_ff=1024,
    max_seq_len=512,
)
