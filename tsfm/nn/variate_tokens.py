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

from tsfm.nn.heads import monotone_quantiles
from tsfm.nn.inputs import fit_context
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

    def forward(
        self, past_values: torch.Tensor, past_mask: torch.Tensor | None = None, past_exog: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [B, C + E, d_model], loc [B, 1, C + E], scale [B, 1, C + E])."""
        values, mask = fit_context(past_values, past_mask, self.context_length, self.embedding.weight.dtype,
                                   past_exog, self.num_exog_channels)
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
