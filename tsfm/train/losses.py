"""Losses shared by every family.

The loss is computed in each window's own scale (pinball / context scale), so that a series
measured in millions and one measured in fractions weigh the same during pretraining.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def context_scale(past_values: torch.Tensor, past_mask: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """Per-window, per-channel scale [B, 1, C]: mean absolute deviation from the observed mean.

    Falls back to the mean absolute level (then 1) for flat contexts so the loss never divides by 0.
    """
    observed = ~torch.isnan(past_values)
    mask = observed.to(past_values.dtype)
    if past_mask is not None:
        mask = mask * past_mask.to(past_values.dtype)
    values = torch.where(mask > 0, past_values, torch.zeros_like(past_values))
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (values * mask).sum(dim=1, keepdim=True) / count
    mad = ((values - mean).abs() * mask).sum(dim=1, keepdim=True) / count
    level = mean.abs()
    scale = torch.where(mad > eps, mad, torch.where(level > eps, level, torch.ones_like(level)))
    return scale


def pinball_loss(
    pred: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float]
) -> torch.Tensor:
    """Elementwise quantile loss: pred [B, H, C, Q], target [B, H, C] -> [B, H, C, Q]."""
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    diff = target.unsqueeze(-1) - pred
    return torch.maximum(q * diff, (q - 1) * diff)


def scaled_pinball_loss(
    pred: torch.Tensor,
    future_values: torch.Tensor,
    quantiles: Sequence[float],
    past_values: torch.Tensor,
    past_mask: torch.Tensor | None = None,
    future_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean pinball loss over observed targets, each window/channel divided by its context scale."""
    observed = ~torch.isnan(future_values)
    mask = observed.to(pred.dtype)
    if future_mask is not None:
        mask = mask * future_mask.to(pred.dtype)
    target = torch.where(mask > 0, future_values, torch.zeros_like(future_values))
    scale = context_scale(past_values, past_mask)  # [B, 1, C]
    loss = pinball_loss(pred, target, quantiles).mean(dim=-1) / scale  # [B, H, C]
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)
