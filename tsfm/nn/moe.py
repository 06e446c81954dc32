"""Sparse mixture-of-experts feed-forward layer (Moirai-MoE's MoE FFN with a learned router).

Each token is sent to ``top_k`` of ``num_experts`` SwiGLU experts (no biases) and gets the
weighted sum of their outputs. Gating (``gating="learned"``, the only choice so far): a linear
router ``d_model -> num_experts`` without bias, softmax probabilities, the ``top_k`` largest,
weights renormalised to sum to 1. This deliberately differs from the released Moirai-MoE, whose
gate is ``cdist`` to frozen k-means centroids with ``topk`` picking the two *farthest* ones and
no auxiliary loss (models.md §3.2, pitfall 5): we train from scratch with no pretrained Moirai
to cluster, so the router is learned and kept balanced by the Switch-Transformer loss
``num_experts * sum_i f_i * P_i`` (``f_i`` share of routed slots taken by expert i, ``P_i`` mean
router probability of expert i), which is 1 when either is uniform and grows as routing collapses.

Two formulations of the same map:
- sparse (eager default): tokens are sorted by expert and each expert runs only on its tokens;
- dense (used while exporting, ``torch.compiler.is_exporting()``, or with ``dispatch="dense"``):
  every expert runs on every token and the outputs are combined with the (mostly zero) gate
  matrix — static shapes, no data-dependent indexing, so the dynamo ONNX exporter can trace it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GATINGS = ("learned",)
DISPATCH_MODES = ("auto", "sparse", "dense")


def load_balancing_loss(
    probs: torch.Tensor, indices: torch.Tensor, num_experts: int, token_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``E * sum_i f_i * P_i`` over (optionally weighted) tokens.

    ``probs [N, E]`` router probabilities, ``indices [N, k]`` chosen experts, ``token_weights [N]``
    (1 = counts, 0 = padding; None: all count). ``f_i`` is not differentiable; the gradient flows
    through ``P_i`` and pushes probability away from overloaded experts.
    """
    if token_weights is None:
        token_weights = probs.new_ones(probs.shape[0])
    w = token_weights.to(probs.dtype)
    total = w.sum().clamp(min=1.0)
    chosen = (indices[..., None] == torch.arange(num_experts, device=indices.device)).to(probs.dtype)  # [N, k, E]
    share = (chosen.sum(dim=1) * w[:, None]).sum(dim=0) / (total * indices.shape[-1])  # f_i
    mean_prob = (probs * w[:, None]).sum(dim=0) / total  # P_i
    return num_experts * (share * mean_prob).sum()


class SwiGLUExperts(nn.Module):
    """``num_experts`` SwiGLU FFNs without biases, stored as stacked weights.

    Expert e maps ``x -> (silu(x @ W1[e]) * (x @ Wg[e])) @ W2[e]`` (Moirai's ``fc1``, ``fc_gate``,
    ``fc2``); ``w_in[e] = [W1[e] | Wg[e]]`` is one ``[D, 2F]`` matrix so each expert costs two
    matmuls. The stacked layout serves both the per-expert (sparse) and the batched (dense)
    formulation with the same parameters.
    """

    def __init__(self, num_experts: int, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.d_ff = d_ff
        self.w_in = nn.Parameter(torch.empty(num_experts, d_model, 2 * d_ff))
        self.w_out = nn.Parameter(torch.empty(num_experts, d_ff, d_model))
        for weight, fan_in in ((self.w_in, d_model), (self.w_out, d_ff)):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default range
            nn.init.uniform_(weight, -bound, bound)

    def _glu(self, hidden: torch.Tensor) -> torch.Tensor:
        value, gate = hidden.chunk(2, dim=-1)  # chunk, not slicing: its backward is one cat
        return F.silu(value) * gate

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on tokens ``x [n, D]``."""
        return self._glu(x @ self.w_in[e]) @ self.w_out[e]

    def all_experts(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert on every token: ``x [N, D] -> [N, E, D]``."""
        hidden = self._glu(torch.einsum("nd,edf->nef", x, self.w_in))
        return torch.einsum("nef,efd->ned", hidden, self.w_out)


class MoEFeedForward(nn.Module):
    """Top-k routed SwiGLU experts: ``x [..., D] -> (y [..., D], load-balancing loss)``.

    ``dispatch``: ``"auto"`` (sparse in eager mode, dense while exporting), ``"sparse"`` or
    ``"dense"``; an attribute, not a config field, because both compute the same function.
    """

    def __init__(self, d_model: int, d_ff: int, num_experts: int, top_k: int = 2, gating: str = "learned") -> None:
        super().__init__()
        if gating not in GATINGS:
            raise ValueError(f"gating '{gating}' is unknown; use one of {', '.join(GATINGS)}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in 1..num_experts ({num_experts}), got {top_k}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = SwiGLUExperts(num_experts, d_model, d_ff)
        self.dispatch = "auto"

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [N, D]`` -> (probs [N, E], top-k indices [N, k], renormalised weights [N, k])."""
        probs = torch.softmax(self.router(x), dim=-1)
        top_probs, indices = torch.topk(probs, self.top_k, dim=-1)
        return probs, indices, top_probs / top_probs.sum(dim=-1, keepdim=True)

    def _use_dense(self) -> bool:
        if self.dispatch not in DISPATCH_MODES:
            raise ValueError(f"dispatch '{self.dispatch}' is unknown; use one of {', '.join(DISPATCH_MODES)}")
        if self.dispatch == "auto":
            return torch.compiler.is_exporting() or torch.jit.is_tracing()
        return self.dispatch == "dense"

    def _sparse(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Each expert runs on its own tokens only: slots sorted by expert, one gather, one scatter-add."""
        k = indices.shape[-1]
        flat_expert = indices.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        token = torch.div(order, k, rounding_mode="floor")
        counts = torch.bincount(flat_expert, minlength=self.num_experts).tolist()
        routed = x[token].split(counts)  # grouped by expert; split (not slices) keeps the backward one cat
        outputs = [self.experts.expert(e, part) for e, part in enumerate(routed) if part.shape[0]]
        y = torch.cat(outputs) * weights.reshape(-1)[order][:, None]
        return torch.zeros_like(x).index_add_(0, token, y)

    def _dense(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """All experts on all tokens, combined with the gate matrix (zero outside the top-k)."""
        experts = torch.arange(self.num_experts, device=x.device)
        gates = ((indices[..., None] == experts).to(x.dtype) * weights[..., None]).sum(dim=1)  # [N, E]
        return (self.experts.all_experts(x) * gates[..., None]).sum(dim=1)

    def forward(
        self, x: torch.Tensor, token_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [..., D]``, optional ``token_weights [...]`` for the loss -> (``y [..., D]``, scalar loss)."""
        flat = x.reshape(-1, x.shape[-1])
        probs, indices, weights = self.route(flat)
        combine = self._dense if self._use_dense() else self._sparse
        y = combine(flat, indices, weights).reshape(x.shape)
        tw = None if token_weights is None else token_weights.reshape(-1)
        return y, load_balancing_loss(probs, indices, self.num_experts, tw)
