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
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm.nn.attention import ACTIVATIONS, TransformerEncoder
from tsfm.nn.scaling import SCALERS
from tsfm.nn.variate_tokens import VariateQuantileHead, VariateTokenizer


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

    tiny_settings: ClassVar[dict[str, Any]] = dict(  # context 64, horizon 16, d_model 16, 2 heads
        context_length=64, prediction_length=16, d_model=16, n_heads=2, e_layers=2, d_ff=32, dropout=0.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "d_model", "n_heads", "e_layers", "d_ff")
        if self.d_model % self.n_heads:
            raise InputError(
                f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; pick n_heads dividing d_model"
            )
        self.check_rates("dropout")
        self.check_choice("activation", ACTIVATIONS)
        self.check_choice("scaling", SCALERS)
        self.check_at_least(0, "num_exog_channels")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(covariate_channels=self.num_exog_channels)

    def with_covariates(self, n_targets: int, n_past: int, n_future: int) -> ITransformerConfig:
        """Covariates are extra variate tokens: only their count changes, every weight is kept."""
        return self.with_past_covariates(n_past, n_future, num_exog_channels=n_past)


class ITransformer(ForecastModel):
    """Inverted transformer: one token per variate. ``forward(...) -> [B, H, C, Q]`` (see module doc)."""

    config_class: ClassVar[type[ModelConfig]] = ITransformerConfig
    config: ITransformerConfig

    def __init__(self, config: ITransformerConfig) -> None:
        super().__init__(config)
        self.tokenizer = VariateTokenizer(config.context_length, config.d_model, config.scaling,
                                          config.mask_input, config.num_exog_channels)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.encoder = TransformerEncoder(
            config.e_layers, config.d_model, config.n_heads, config.d_ff, config.dropout, config.activation
        )
        self.head = VariateQuantileHead(config.d_model, config.prediction_length, len(config.quantiles),
                                        config.median_index)

    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if future_exog is not None:
            raise InputError(
                "iTransformer has no path for known-future covariates (future_exog); pass them as past_exog "
                "or use a model with an exogenous mixer (ttm)"
            )
        tokens, loc, scale = self.tokenizer(past_values, past_mask, past_exog)
        n_targets = past_values.shape[-1]
        hidden = self.encoder(self.embed_dropout(tokens))[:, :n_targets]  # covariate tokens are not forecast
        return self.head(hidden, loc, scale)
