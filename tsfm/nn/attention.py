"""Multi-head self-attention and a post-LN transformer encoder, built from export-friendly ops.

Attention is written as plain ``matmul`` + ``softmax`` (no fused kernel, no data-dependent shapes)
so the dynamo ONNX exporter emits MatMul/Softmax with the batch and token axes left symbolic.
The encoder layer is the classic post-LN block of iTransformer (models.md §2.1):
``x = LN1(x + Drop(MHA(x))); out = LN2(x + Drop(FFN(x)))`` with ``FFN = Linear -> act -> Drop -> Linear``
(iTransformer's kernel-1 ``Conv1d`` pair is the same map as two per-token ``Linear`` layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


class MultiHeadSelfAttention(nn.Module):
    """``[B, N, D] -> [B, N, D]`` full softmax attention over the N tokens, scale ``1/sqrt(D/heads)``.

    ``attn_mask`` (optional, bool, broadcastable to ``[B, heads, N, N]``) marks the pairs that may
    attend (True); a causal decoder passes a lower-triangular mask. Without it every token sees
    every token, so the layer is equivariant to permuting the tokens.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, heads, N, D/heads]``."""
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(weights, v).transpose(1, 2).flatten(-2)  # [B, N, D]
        return self.out(context)


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer: attention and a per-token feed-forward, each + residual + LN."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu"
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation '{activation}' is unknown; use one of {', '.join(ACTIVATIONS)}")
        self.attention = MultiHeadSelfAttention(d_model, n_heads, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff_in = nn.Linear(d_model, d_ff)
        self.ff_out = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)
        self.activation = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, attn_mask)))
        y = self.dropout(self.activation(self.ff_in(x)))
        return self.norm2(x + self.dropout(self.ff_out(y)))


class TransformerEncoder(nn.Module):
    """A stack of ``EncoderLayer`` followed by a final LayerNorm (as in iTransformer's ``Encoder``)."""

    def __init__(
        self, num_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, activation) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, attn_mask)
        return self.norm(x)
