"""What every family does with its raw inputs first: NaN and mask handling, the covariate shape
checks, and fitting the history to the model's context."""

from __future__ import annotations

import torch

from tsfm.errors import InputError
from tsfm.nn.patching import fit_to_length


def prepare_inputs(
    past_values: torch.Tensor, past_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (values with NaN replaced by 0, float mask) — NaN always counts as unobserved."""
    observed = ~torch.isnan(past_values)
    mask = observed.to(past_values.dtype)
    if past_mask is not None:
        mask = mask * past_mask.to(past_values.dtype)
    values = torch.where(mask > 0, past_values, torch.zeros_like(past_values))
    return values, mask


def check_past_values(past_values: torch.Tensor) -> None:
    if past_values.dim() != 3:
        raise InputError(f"past_values must be [batch, time, channels], got shape {tuple(past_values.shape)}")


def check_past_exog(past_values: torch.Tensor, past_exog: torch.Tensor, expected: int = 0) -> None:
    """``past_exog [B, L, E]`` aligned with ``past_values``, with ``expected`` channels (0: any count)."""
    if past_exog.dim() != 3 or past_exog.shape[:2] != past_values.shape[:2]:
        raise InputError(
            f"past_exog must be [batch, time, exog] aligned with past_values {tuple(past_values.shape)}, "
            f"got {tuple(past_exog.shape)}"
        )
    if expected and past_exog.shape[-1] != expected:
        raise InputError(f"model expects {expected} exogenous channels, got {past_exog.shape[-1]}")


def fit_context(
    past_values: torch.Tensor,
    past_mask: torch.Tensor | None,
    length: int,
    dtype: torch.dtype,
    past_exog: torch.Tensor | None = None,
    num_exog: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, float mask) ``[B, length, C + E]``: the targets, then the past covariates (observed
    where finite), NaN-free, cut to the last ``length`` steps or left-padded (masked)."""
    check_past_values(past_values)
    values, mask = prepare_inputs(past_values.to(dtype), past_mask)
    if past_exog is not None:
        check_past_exog(past_values, past_exog, num_exog)
        exog_values, exog_mask = prepare_inputs(past_exog.to(dtype), None)
        values, mask = torch.cat([values, exog_values], dim=-1), torch.cat([mask, exog_mask], dim=-1)
    return fit_to_length(values, length), fit_to_length(mask, length)
