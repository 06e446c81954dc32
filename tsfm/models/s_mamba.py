"""S-Mamba (Wang et al., Neurocomputing 2024, arXiv 2403.11144), reimplemented for the tsfm contract.

Data flow (``forward``): raw ``[B, L, C]`` (+ past covariates as extra variates) -> fit to
``context_length`` (left-padded with masked values / last L kept) -> per-sample per-variate
mask-aware scaling -> each variate's whole lookback is one token: ``Linear(2L -> d_model)`` on
[scaled values (0 where unobserved), observed mask] -> ``e_layers`` encoder layers, each a
bidirectional Mamba across the variate tokens ``MambaF(x) + flip(MambaB(flip(x)))`` followed by
iTransformer's post-LN FFN -> final LayerNorm -> covariate tokens dropped -> ``Linear(d_model ->
H·Q)`` per token with monotone quantiles -> de-normalised ``[B, H, C, Q]``.

Deliberate differences from the reference code (models.md §4.1): a quantile head (pinball loss)
instead of the MSE point head; the tokeniser sees the observed mask (``mask_input``) so short and
gappy histories work; the scaler is mask-aware (``std_rel`` by default, the paper uses mean/std
with 1e-5 inside the sqrt = ``std``); the unused ``man``/``man2``/attention modules of the
reference ``EncoderLayer`` are not built (pitfall 8). ``freq_id`` is accepted and ignored (the
model has no frequency input); ``future_exog`` raises ``InputError`` (S-Mamba has no way to use
known-future covariates). The scan runs on ``scan_backend`` (see ``tsfm.kernels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.errors import InputError
from tsfm.kernels import BACKENDS
from tsfm.kernels.selective_scan import TRACED_CHUNK_SIZE
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm.nn.mamba import MambaBlock
from tsfm.nn.scaling import SCALERS
from tsfm.nn.variate_tokens import VariateQuantileHead, VariateTokenizer


@dataclass
class SMambaConfig(ModelConfig):
    """S-Mamba hyperparameters; ``d_conv=2, expand=1`` as in the paper's code."""

    family: ClassVar[str] = "s-mamba"
    d_model: int = 128
    d_state: int = 16
    d_conv: int = 2
    expand: int = 1
    e_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    mask_input: bool = True
    scaling: str = "std_rel"
    scan_backend: str = "auto"
    scan_chunk_size: int | None = None  # chunked backend: steps per chunk (None: kernel default)

    tiny_settings: ClassVar[dict[str, Any]] = dict(  # context 32, horizon 8, d_model 16
        context_length=32, prediction_length=8, d_model=16, d_state=4, e_layers=2, d_ff=32, dropout=0.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "d_model", "d_state", "d_conv", "expand", "e_layers", "d_ff")
        self.check_rates("dropout")
        self.check_choice("scaling", SCALERS)
        self.check_choice("scan_backend", BACKENDS)
        if self.scan_chunk_size is not None and self.scan_chunk_size < 1:
            raise InputError(f"SMambaConfig.scan_chunk_size must be >= 1 or None, got {self.scan_chunk_size}")

    @property
    def capabilities(self) -> Capabilities:
        """ONNX export traces the scan over variate tokens with two chunks and one more token: an
        example inside one chunk would bake in a single chunk, and a named ``Dim`` trips on the
        chunk padding arithmetic (the exporter then uses ``Dim.AUTO``)."""
        return Capabilities(export_example_channels=2 * (self.scan_chunk_size or TRACED_CHUNK_SIZE) + 1)


class BiMambaLayer(nn.Module):
    """Bidirectional Mamba over the token axis, then the post-LN FFN of iTransformer."""

    def __init__(self, config: SMambaConfig) -> None:
        super().__init__()
        d = config.d_model
        kwargs = dict(d_state=config.d_state, d_conv=config.d_conv, expand=config.expand,
                      scan_backend=config.scan_backend, scan_chunk_size=config.scan_chunk_size)
        self.forward_mamba = MambaBlock(d, **kwargs)
        self.backward_mamba = MambaBlock(d, **kwargs)
        self.norm1 = nn.LayerNorm(d)
        self.norm2 = nn.LayerNorm(d)
        self.ff_in = nn.Linear(d, config.d_ff)
        self.ff_out = nn.Linear(config.d_ff, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.forward_mamba(x) + self.backward_mamba(x.flip(1)).flip(1)
        x = self.norm1(x + mixed)
        y = self.dropout(self.ff_out(self.dropout(F.gelu(self.ff_in(x)))))
        return self.norm2(x + y)


class SMamba(ForecastModel):
    """S-Mamba: variate tokens mixed by bidirectional Mamba; ``forward`` follows ForecastModel."""

    config_class: ClassVar[type[ModelConfig]] = SMambaConfig
    config: SMambaConfig

    def __init__(self, config: SMambaConfig) -> None:
        super().__init__(config)
        self.tokenizer = VariateTokenizer(config.context_length, config.d_model, config.scaling, config.mask_input)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(BiMambaLayer(config) for _ in range(config.e_layers))
        self.norm = nn.LayerNorm(config.d_model)
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
            raise InputError("S-Mamba cannot use future_exog (known-future covariates); pass past_exog only")
        tokens, loc, scale = self.tokenizer(past_values, past_mask, past_exog)
        n_targets = past_values.shape[-1]
        hidden = self.dropout(tokens)
        for layer in self.layers:
            hidden = layer(hidden)
        hidden = self.norm(hidden)[:, :n_targets]  # covariate tokens are not forecast
        return self.head(hidden, loc, scale)
