"""Position-wise feed-forward networks.

Plain MLP (Vaswani et al. 2017, eq. 2):   FFN(x) = W2 act(W1 x + b1) + b2,  act in {ReLU, GELU}.
GLU family (Dauphin et al. 2017; Shazeer 2020, "GLU Variants Improve Transformer"):
    FFN_GLU(x) = W2 ( act(W x) * (V x) )
with act = sigmoid (GLU), GELU (GEGLU), SiLU/Swish (SwiGLU) or ReLU (ReGLU). The gate W and the
value V are separate ``gate_proj``/``up_proj`` matrices (Llama/Mixtral naming), W2 is ``down_proj``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PLAIN_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}
GLU_ACTIVATIONS = {"glu": torch.sigmoid, "geglu": F.gelu, "swiglu": F.silu, "reglu": F.relu}
ACTIVATIONS = tuple(PLAIN_ACTIVATIONS) + tuple(GLU_ACTIVATIONS)


class MLP(nn.Module):
    """``fc2(dropout(act(fc1 x)))`` with ReLU or GELU."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if activation not in PLAIN_ACTIVATIONS:
            raise ValueError(f"MLP activation {activation!r} must be one of {list(PLAIN_ACTIVATIONS)}")
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.act = PLAIN_ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class GLUMLP(nn.Module):
    """``down_proj(dropout(act(gate_proj x) * up_proj x))``."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "swiglu", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if activation not in GLU_ACTIVATIONS:
            raise ValueError(f"GLU activation {activation!r} must be one of {list(GLU_ACTIVATIONS)}")
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.act = GLU_ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


def make_mlp(d_model: int, d_ff: int, activation: str, bias: bool, dropout: float) -> nn.Module:
    if activation in GLU_ACTIVATIONS:
        return GLUMLP(d_model, d_ff, activation, bias=bias, dropout=dropout)
    return MLP(d_model, d_ff, activation, bias=bias, dropout=dropout)
