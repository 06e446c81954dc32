"""Mask-aware per-series scalers: statistics come from observed points only.

Each scaler maps ``values [B, L, C]`` and ``mask [B, L, C]`` (1 = observed) to ``loc, scale [B, 1, C]``;
models compute ``(x - loc) / scale`` on the way in and ``y * scale + loc`` on the way out, so an
exported graph takes raw values. Padding and missing points never count (models.md §8 pitfall 2).
All-masked and constant channels give a finite, positive scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Scaler = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def std_scale(values: torch.Tensor, mask: torch.Tensor, min_var: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed mean and standard deviation, TTM's convention.

    Population variance with ``min_var`` added inside the square root (granite-tsfm's
    ``minimum_scale``), so a constant channel gets ``scale = sqrt(min_var)``.
    """
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    loc = (values * mask).sum(dim=1, keepdim=True) / count
    var = (((values - loc) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return loc, torch.sqrt(var + min_var)


# The level-relative floor of ``relative_std_scale``: 16x the float32 rounding of the level (6e-8 of
# it), so only variation that float32 cannot hold is floored. 1e-4 squashed a counter near 1e7 that
# moves by tens (std 20 < 1e-4 x 1e7) to a flat line; no context of the dev benchmark has a std under
# 4e-4 of its mean, so its forecasts barely move.
REL_FLOOR = 1e-6


def relative_std_scale(
    values: torch.Tensor, mask: torch.Tensor, rel_floor: float = REL_FLOOR, abs_floor: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Observed mean and std with a floor relative to the level instead of TTM's absolute 1e-5.

    ``scale = sqrt(var + (rel_floor * loc)^2 + abs_floor^2)``: a series in small units (rates as
    fractions, std 1e-3) keeps ``forecast(a*x + b) = a*forecast(x) + b``, which the absolute floor
    breaks, while a flat channel still gets a positive scale. A shift ``b`` large against the
    variation (past ``std / REL_FLOOR``) is where the floor takes over.
    """
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    loc = (values * mask).sum(dim=1, keepdim=True) / count
    var = (((values - loc) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return loc, torch.sqrt(var + (rel_floor * loc) ** 2 + abs_floor**2)


def mean_abs_scale(
    values: torch.Tensor, mask: torch.Tensor, minimum_scale: float = 1e-10
) -> tuple[torch.Tensor, torch.Tensor]:
    """``loc = 0``, ``scale`` = observed mean absolute value (clamped to ``minimum_scale``)."""
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    scale = ((values * mask).abs().sum(dim=1, keepdim=True) / count).clamp(min=minimum_scale)
    return torch.zeros_like(scale), scale


def no_scale(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Identity scaling (``loc = 0``, ``scale = 1``), for data scaled outside the model."""
    shape = (values.shape[0], 1, values.shape[2])
    return values.new_zeros(shape), values.new_ones(shape)


SCALERS: dict[str, Scaler] = {
    "std": std_scale, "std_rel": relative_std_scale, "mean": mean_abs_scale, "none": no_scale,
}


def get_scaler(name: str) -> Scaler:
    """Scaler function by config name (``std``, ``mean`` or ``none``)."""
    if name not in SCALERS:
        raise ValueError(f"unknown scaling '{name}'; choose one of {', '.join(SCALERS)}")
    return SCALERS[name]
