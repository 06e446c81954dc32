"""iTransformer (Liu et al., ICLR 2024), reimplemented for the tsfm contract.

Data flow (``forward``): raw ``[B, L, C]`` (+ past covariates ``[B, L, E]``) -> fit to
``context_length`` (shorter histories left-padded and masked, longer ones cut to the last
``context_length`` steps) -> per-sample, per-variate mask-aware normalisation -> each variate's
whole lookback embedded as ONE token (``Linear(L -> d_model)``, or ``Linear(2L -> d_model)`` on
[scaled values with 0 at unobserved points, observed mask] when ``mask_input``) -> post-LN
transformer encoder attending across variate tokens (no positional encoding, so the model is
equivariant to permuting the variates and accepts any variate count) -> final LayerNorm ->
per-token projection ``Linear(d_model -> H·Q)`` -> covariate tokens dropped -> monotone quantiles ->
de-normalised ``[B, H, C, Q]``.

Deliberate differences from thuml/iTransformer (models.md §2):
- a quantile head (monotone parameterisation, ``tsfm.nn.heads``) replaces the MSE point head;
- the embedding sees the observed mask and normalisation ignores unobserved points, so short or
  gappy histories work (the paper requires a full, clean lookback);
- the default scaler is ``std_rel`` (std with a level-relative floor, keeps affine equivariance for
  series in small units); ``scaling="std"`` is the paper's ``sqrt(var + 1e-5)``. Statistics are
  not detached (the paper detaches the mean only); the loss is the scale-free pinball loss;
- covariates are the caller's ``past_exog`` (normalised like the targets) instead of time-feature
  marks; they are extra tokens sharing the embedding, dropped before the output;
- ``freq_id`` is accepted and ignored: the architecture has no frequency input;
- ``future_exog`` raises ``InputError``: the paper's model has no path for known-future covariates,
  and silently dropping them would hide that the user's covariates are unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from tsfm.errors import InputError
from tsfm.models.base import ForecastModel, ModelConfig, prepare_inputs
from tsfm.nn.attention import ACTIVATIONS, TransformerEncoder
from tsfm.nn.heads import monotone_quantiles
from tsfm.nn.patching import fit_to_length
from tsfm.nn.scaling import SCALERS, get_scaler


@dataclass
class ITransformerConfig(ModelConfig):
    """iTransformer hyperparameters; the defaults are a small model (~0.5M parameters).

    ``num_exog_channels`` is the number of past covariates the model was trained with (0: none, or
    any count). Attention mixes all tokens, so covariates influence every target forecast.
    """

    family: ClassVar[str] = "itransformer"
    d_model: int = 128
    n_heads: int = 4
    e_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    activation: str = "gelu"
    mask_input: bool = True
    scaling: str = "std_rel"  # the paper: "std" (population std, 1e-5 inside the sqrt)
    num_exog_channels: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("d_model", "n_heads", "e_layers", "d_ff"):
            if getattr(self, name) < 1:
                raise InputError(f"ITransformerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise InputError(
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; pick n_heads dividing d_model"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"ITransformerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise InputError(f"activation '{self.activation}' is unknown; use one of {', '.join(ACTIVATIONS)}")
        if self.scaling not in SCALERS:
            raise InputError(f"scaling '{self.scaling}' is unknown; use one of {', '.join(SCALERS)}")
        if self.num_exog_channels < 0:
            raise InputError(f"ITransformerConfig.num_exog_channels must be >= 0, got {self.num_exog_channels}")

    @classmethod
    def tiny(cls, **overrides: Any) -> "ITransformerConfig":
        """A small config for smoke tests and examples (context 64, horizon 16, d_model 16, 2 heads)."""
        settings: dict[str, Any] = dict(
            context_length=64, prediction_length=16, d_model=16, n_heads=2, e_layers=2, d_ff=32, dropout=0.0,
        )
        settings.update(overrides)
        return cls(**settings)


class ITransformer(ForecastModel):
    """Inverted transformer: one token per variate. ``forward(...) -> [B, H, C, Q]`` (see module doc)."""

    config_class: ClassVar[type[ModelConfig]] = ITransformerConfig
    config: ITransformerConfig

    def __init__(self, config: ITransformerConfig) -> None:
        super().__init__(config)
        self.scaler = get_scaler(config.scaling)
        self.embedding = nn.Linear(config.context_length * (2 if config.mask_input else 1), config.d_model)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder = TransformerEncoder(
            config.e_layers, config.d_model, config.n_heads, config.d_ff, config.dropout, config.activation
        )
        self.projection = nn.Linear(config.d_model, config.prediction_length * len(config.quantiles))

    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if past_values.dim() != 3:
            raise InputError(f"past_values must be [batch, time, channels], got shape {tuple(past_values.shape)}")
        if future_exog is not None:
            raise InputError(
                "iTransformer has no path for known-future covariates (future_exog); pass them as past_exog "
                "or use a model with an exogenous mixer (ttm)"
            )
        dtype = self.embedding.weight.dtype
        values, mask = self._fit_context(past_values.to(dtype), past_mask)
        n_targets = values.shape[-1]
        if past_exog is not None:
            self._check_exog(past_values, past_exog)
            exog_values, exog_mask = self._fit_context(past_exog.to(dtype), None)
            values, mask = torch.cat([values, exog_values], dim=-1), torch.cat([mask, exog_mask], dim=-1)

        loc, scale = self.scaler(values, mask)
        scaled = (values - loc) / scale * mask  # unobserved points are exactly 0
        tokens = scaled.transpose(1, 2)  # [B, N, L]: one token per variate (and per covariate)
        if self.config.mask_input:
            tokens = torch.cat([tokens, mask.transpose(1, 2)], dim=-1)
        hidden = self.encoder(self.embed_dropout(self.embedding(tokens)))[:, :n_targets]  # [B, C, D]
        raw = self.projection(hidden).unflatten(-1, (self.config.prediction_length, len(self.quantiles)))
        out = monotone_quantiles(raw, self.config.median_index).transpose(1, 2)  # [B, H, C, Q], scaled
        loc, scale = loc[:, :, :n_targets, None], scale[:, :, :n_targets, None]
        return out * scale + loc

    def _fit_context(
        self, values: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NaN-free values and float mask, cut or left-padded (masked) to ``context_length``."""
        values, mask = prepare_inputs(values, mask)
        length = self.config.context_length
        return fit_to_length(values, length), fit_to_length(mask, length)

    def _check_exog(self, past_values: torch.Tensor, past_exog: torch.Tensor) -> None:
        if past_exog.dim() != 3 or past_exog.shape[:2] != past_values.shape[:2]:
            raise InputError(
                f"past_exog must be [batch, time, exog] aligned with past_values {tuple(past_values.shape)}, "
                f"got {tuple(past_exog.shape)}"
            )
        expected = self.config.num_exog_channels
        if expected and past_exog.shape[-1] != expected:
            raise InputError(f"model expects {expected} exogenous channels, got {past_exog.shape[-1]}")
