"""Losses shared by every family.

The loss is computed in each window's own scale (pinball / context scale), so that a series
measured in millions and one measured in fractions weigh the same during pretraining. Two scales:

- ``"mad"``: the context's mean absolute deviation (its spread around the mean level);
- ``"naive"``: the context's mean absolute one-step change, the denominator of MASE (m = 1), as
  N-BEATS trains on MASE. On a smooth series (a trend, a slow cycle) the one-step change is a
  small part of the spread, so under ``"mad"`` an error of one step's change costs almost nothing
  and the model never learns to extrapolate it precisely; under ``"naive"`` it costs what it
  costs in MASE. Floored at ``NAIVE_FLOOR`` x the MAD so that near-constant contexts with a few
  jumps do not get unbounded weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tsfm.errors import InputError
from tsfm.nn.inputs import prepare_inputs

LOSS_SCALES = ("mad", "naive")
NAIVE_FLOOR = 0.05  # the naive scale is at least this share of the MAD: weights at most 20x "mad"'s


def check_loss_scale(kind: str) -> None:
    """Fail with one line naming the valid scales (called before training and by ``context_scale``)."""
    if kind not in LOSS_SCALES:
        raise InputError(f"unknown loss scale {kind!r} (optim.loss_scale); choose one of {', '.join(LOSS_SCALES)}")


def context_scale(
    past_values: torch.Tensor, past_mask: torch.Tensor | None, eps: float = 1e-5, kind: str = "mad"
) -> torch.Tensor:
    """Per-window, per-channel scale [B, 1, C] of the observed context (module docstring: ``kind``).

    Falls back to the mean absolute level (then 1) for flat contexts so the loss never divides by 0.
    """
    check_loss_scale(kind)
    values, mask = prepare_inputs(past_values, past_mask)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (values * mask).sum(dim=1, keepdim=True) / count
    scale = ((values - mean).abs() * mask).sum(dim=1, keepdim=True) / count  # the MAD
    if kind == "naive":
        pairs = mask[:, 1:] * mask[:, :-1]  # consecutive observed points
        steps = ((values[:, 1:] - values[:, :-1]).abs() * pairs).sum(dim=1, keepdim=True)
        scale = torch.maximum(steps / pairs.sum(dim=1, keepdim=True).clamp(min=1.0), NAIVE_FLOOR * scale)
    level = mean.abs()
    return torch.where(scale > eps, scale, torch.where(level > eps, level, torch.ones_like(level)))


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
    scale_kind: str = "mad",
) -> torch.Tensor:
    """Mean pinball loss over observed targets, each window/channel divided by its context scale."""
    target, mask = prepare_inputs(future_values, future_mask)
    mask = mask.to(pred.dtype)
    scale = context_scale(past_values, past_mask, kind=scale_kind)  # [B, 1, C]
    loss = pinball_loss(pred, target, quantiles).mean(dim=-1) / scale  # [B, H, C]
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)
