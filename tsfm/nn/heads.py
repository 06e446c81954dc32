"""Output heads: quantile forecasts whose levels can never cross."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def monotone_quantiles(raw: torch.Tensor, median_index: int) -> torch.Tensor:
    """Map unconstrained ``raw [..., Q]`` to non-decreasing quantiles along the last axis.

    ``raw[..., median_index]`` is the median; each level above adds a softplus increment to the
    level below it, each level below subtracts one from the level above, so quantiles cannot cross
    (not even by a rounding error: ``fl(a + s) >= a`` for ``s >= 0``). The loop runs over the few
    quantile levels, a fixed config size, and exports as plain Add/Sub ops.
    """
    increments = F.softplus(raw)
    median = raw[..., median_index : median_index + 1]
    above, level = [], median
    for j in range(median_index + 1, raw.shape[-1]):
        level = level + increments[..., j : j + 1]
        above.append(level)
    below, level = [], median
    for j in reversed(range(median_index)):
        level = level - increments[..., j : j + 1]
        below.append(level)
    return torch.cat([*reversed(below), median, *above], dim=-1)


class QuantileHead(nn.Module):
    """``[B, C, N, D] -> [B, C, H, Q]``: flatten tokens, dropout, one linear map, monotone levels."""

    def __init__(
        self, num_tokens: int, d_model: int, horizon: int, quantiles: Sequence[float], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.num_quantiles = len(quantiles)
        self.median_index = list(quantiles).index(0.5)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(num_tokens * d_model, horizon * self.num_quantiles)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        raw = self.proj(self.dropout(hidden.flatten(start_dim=-2)))
        raw = raw.unflatten(-1, (self.horizon, self.num_quantiles))
        return monotone_quantiles(raw, self.median_index)
