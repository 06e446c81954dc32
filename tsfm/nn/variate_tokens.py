"""Inverted (variate-token) embedding and head, shared by iTransformer and S-Mamba.

Each variate's whole lookback becomes one token: raw values are fitted to the context (left
padding masked), scaled per sample and variate from observed points only, and embedded by one
linear layer, with the observed mask beside the values so short histories are handled. Past
covariates become extra tokens. The head projects each target token to H x Q monotone
quantiles and undoes the scaling, so the model takes and returns raw values.
"""

from __future__ import annotations

import torch
from torch import nn

from tsfm.errors import InputError
from tsfm.models.base import prepare_inputs
from tsfm.nn.heads import monotone_quantiles
from tsfm.nn.patching import fit_to_length
from tsfm.nn.scaling import get_scaler


class VariateTokenizer(nn.Module):
    """[B, L, C] raw values (+ [B, L, E] past covariates) -> tokens [B, C + E, d_model] and scales."""

    def __init__(
        self, context_length: int, d_model: int, scaling: str, mask_input: bool = True, num_exog_channels: int = 0
    ) -> None:
        super().__init__()
        self.context_length = context_length
        self.mask_input = mask_input
        self.num_exog_channels = num_exog_channels
        self.scaler = get_scaler(scaling)
        self.embedding = nn.Linear(context_length * (2 if mask_input else 1), d_model)

    def fit_context(self, values: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """NaN-free values and float mask, cut or left-padded (masked) to ``context_length``."""
        values, mask = prepare_inputs(values, mask)
        return fit_to_length(values, self.context_length), fit_to_length(mask, self.context_length)

    def check_exog(self, past_values: torch.Tensor, past_exog: torch.Tensor) -> None:
        if past_exog.dim() != 3 or past_exog.shape[:2] != past_values.shape[:2]:
            raise InputError(
                f"past_exog must be [batch, time, exog] aligned with past_values {tuple(past_values.shape)}, "
                f"got {tuple(past_exog.shape)}"
            )
        expected = self.num_exog_channels
        if expected and past_exog.shape[-1] != expected:
            raise InputError(f"model expects {expected} exogenous channels, got {past_exog.shape[-1]}")

    def forward(
        self, past_values: torch.Tensor, past_mask: torch.Tensor | None = None, past_exog: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [B, C + E, d_model], loc [B, 1, C + E], scale [B, 1, C + E])."""
        if past_values.dim() != 3:
            raise InputError(f"past_values must be [batch, time, channels], got shape {tuple(past_values.shape)}")
        dtype = self.embedding.weight.dtype
        values, mask = self.fit_context(past_values.to(dtype), past_mask)
        if past_exog is not None:
            self.check_exog(past_values, past_exog)
            exog_values, exog_mask = self.fit_context(past_exog.to(dtype), None)
            values, mask = torch.cat([values, exog_values], dim=-1), torch.cat([mask, exog_mask], dim=-1)
        loc, scale = self.scaler(values, mask)
        scaled = (values - loc) / scale * mask  # unobserved points are exactly 0
        tokens = scaled.transpose(1, 2)  # [B, N, L]: one token per variate (and per covariate)
        if self.mask_input:
            tokens = torch.cat([tokens, mask.transpose(1, 2)], dim=-1)
        return self.embedding(tokens), loc, scale


class VariateQuantileHead(nn.Module):
    """Target tokens [B, C, d_model] -> monotone quantiles [B, H, C, Q] in the input's scale."""

    def __init__(self, d_model: int, prediction_length: int, num_quantiles: int, median_index: int) -> None:
        super().__init__()
        self.prediction_length = prediction_length
        self.num_quantiles = num_quantiles
        self.median_index = median_index
        self.projection = nn.Linear(d_model, prediction_length * num_quantiles)

    def forward(self, hidden: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        n_targets = hidden.shape[1]
        raw = self.projection(hidden).unflatten(-1, (self.prediction_length, self.num_quantiles))
        out = monotone_quantiles(raw, self.median_index).transpose(1, 2)  # [B, H, C, Q], scaled
        return out * scale[:, :, :n_targets, None] + loc[:, :, :n_targets, None]
