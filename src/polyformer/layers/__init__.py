"""Building blocks shared by the model families."""

from .attention import KVCache, MultiHeadAttention, causal_mask, padding_to_attn_mask
from .mlp import ACTIVATIONS, GLU_ACTIVATIONS, GLUMLP, MLP, make_mlp
from .norms import RMSNorm, make_norm
from .positional import (
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
    make_positional,
    sinusoidal_table,
)

__all__ = [
    "ACTIVATIONS",
    "GLU_ACTIVATIONS",
    "GLUMLP",
    "KVCache",
    "LearnedPositionalEncoding",
    "MLP",
    "MultiHeadAttention",
    "RMSNorm",
    "SinusoidalPositionalEncoding",
    "causal_mask",
    "make_mlp",
    "make_norm",
    "make_positional",
    "padding_to_attn_mask",
    "sinusoidal_table",
]
