"""Multi-head self-attention and a post-LN transformer encoder, built from export-friendly ops.

Attention is written as plain ``matmul`` + ``softmax`` (no fused kernel, no data-dependent shapes)
so the dynamo ONNX exporter emits MatMul/Softmax with the batch and token axes left symbolic.
The encoder layer is the classic post-LN block of iTransformer (models.md §2.1):
``x = LN1(x + Drop(MHA(x))); out = LN2(x + Drop(FFN(x)))`` with ``FFN = Linear -> act -> Drop -> Linear``
(iTransformer's kernel-1 ``Conv1d`` pair is the same map as two per-token ``Linear`` layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.nn.decay import exempt_from_weight_decay

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


# ----------------------------------------------------------------------------- decoder-only blocks
# Used by Moirai-MoE: pre-norm RMSNorm, QK-norm, rotary embeddings on a time index, any-variate
# attention (a learned per-head bias for same- vs different-variate pairs) and a key/value cache.


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` over the last axis (no mean subtraction, no bias), as in Moirai."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on the first ``rotary_dim`` features of each head.

    Positions are a float index (Moirai rotates by ``time_id``, so the variates of one time step
    share an angle and the attention score depends only on the time *difference*). Pairs are
    (i, i + rotary_dim/2) ("rotate half"); features past ``rotary_dim`` pass through unchanged
    (Moirai rotates half of each head). The frequencies are a non-persistent buffer: derived from
    the config, never stored in checkpoints.
    """

    def __init__(self, rotary_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if rotary_dim < 2 or rotary_dim % 2:
            raise ValueError(f"rotary_dim must be an even number >= 2, got {rotary_dim}")
        self.rotary_dim = rotary_dim
        inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions [N]`` -> ``(cos, sin)`` each ``[N, rotary_dim / 2]``."""
        freqs = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]
        return freqs.cos(), freqs.sin()

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., N, head_dim]`` by the angles of its N positions (split, not slices: cheap backward)."""
        half = self.rotary_dim // 2
        first, second, rest = x.split([half, half, x.shape[-1] - self.rotary_dim], dim=-1)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        return torch.cat([first * cos - second * sin, second * cos + first * sin, rest], dim=-1)


def any_variate_mask(
    time_q: torch.Tensor, time_k: torch.Tensor, key_valid: torch.Tensor, offset: int | torch.Tensor = 0
) -> torch.Tensor:
    """Bool ``[B, 1, Nq, Nk]``: query i may see key j when ``time_k <= time_q`` and key j is valid.

    ``key_valid [B, Nk]`` is False for tokens with no observed value (padding): they are never
    seen, except by themselves (query i is key ``offset + i``), so no row is empty. Variates at the
    same time step see each other; a later time step is never seen (causal in time).
    """
    causal = time_k[None, :] <= time_q[:, None]  # [Nq, Nk]
    nq, nk = time_q.shape[0], time_k.shape[0]
    own = torch.arange(nk, device=time_q.device)[None, :] == (
        torch.arange(nq, device=time_q.device)[:, None] + offset
    )
    return ((causal[None] & key_valid[:, None, :]) | own[None])[:, None]


class AnyVariateAttention(nn.Module):
    """Multi-head attention over flattened (variate, time) tokens with QK-norm, RoPE and a variate bias.

    ``scores = <RoPE(norm(q)), RoPE(norm(k))> / sqrt(head_dim) + bias[h, same_variate]``: the bias is
    one learned scalar per head for same-variate pairs and one for different-variate pairs
    (Moirai's binary attention bias), so the layer is equivariant to permuting the variates. No
    biases in the projections. ``past`` (keys after RoPE, values) of earlier tokens lets a decoder
    compute only its new tokens; the returned pair is the cache including them.
    """

    def __init__(self, d_model: int, n_heads: int, rope: RotaryEmbedding, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        if rope.rotary_dim > self.head_dim:
            raise ValueError(f"rotary_dim {rope.rotary_dim} exceeds head_dim {self.head_dim}")
        self.rope = rope
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)
        self.variate_bias = nn.Parameter(torch.zeros(2, n_heads))  # [different, same] per head
        exempt_from_weight_decay(self.variate_bias)  # a bias, although 2-D: exempt from AdamW decay
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.n_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attn_mask: torch.Tensor,
        same_variate: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x [B, Nq, D]`` new tokens, ``cos/sin [Nq, r]`` their angles, ``attn_mask [B, 1, Nq, Nk]``,
        ``same_variate [Nq, Nk]`` -> ``([B, Nq, D], (keys, values) [B, heads, Nk, head_dim])``."""
        q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        q = self.rope.rotate(self.q_norm(q), cos, sin)
        k = self.rope.rotate(self.k_norm(k), cos, sin)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        bias = torch.where(same_variate[None], self.variate_bias[1][:, None, None], self.variate_bias[0][:, None, None])
        scores = (scores + bias).masked_fill(~attn_mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(weights, v).transpose(1, 2).flatten(-2)
        return self.out(context), (k, v)


@dataclass
class KVCache:
    """Keys/values of every layer for the tokens decoded so far, plus what the mask needs about them.

    ``layers[i]`` is ``(keys, values)`` of layer i, each ``[B, heads, N, head_dim]`` (keys already
    rotated); ``time_id``/``variate_id`` ``[N]`` and ``valid [B, N]`` describe the N cached tokens.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    time_id: torch.Tensor
    variate_id: torch.Tensor
    valid: torch.Tensor

    @property
    def length(self) -> int:
        return self.time_id.shape[0]

    def repeat_batch(self, repeats: int) -> KVCache:
        """Each sample's cache repeated ``repeats`` times, sample-major (``b*repeats + j`` is copy j of b).

        Written as expand + reshape (no ``repeat_interleave``) so the batch axis stays symbolic on export.
        """

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(1).expand(t.shape[0], repeats, *t.shape[1:]).reshape(-1, *t.shape[1:])

        return KVCache([(rep(k), rep(v)) for k, v in self.layers], self.time_id, self.variate_id, rep(self.valid))
