"""The model contract every family keeps (DESIGN.md §3).

A family is a config dataclass (JSON-serialisable) plus an ``nn.Module`` whose ``forward`` takes
raw values and returns quantiles in the input's scale. The Forecaster, training, evaluation and
export only ever talk to this interface.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class ModelConfig:
    """Fields every family shares; families subclass and add their hyperparameters."""

    family: ClassVar[str] = ""
    context_length: int = 512
    prediction_length: int = 96
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    # Settings that add no weights, so a checkpoint can continue training with them changed.
    weight_free_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self.quantiles = tuple(float(q) for q in self.quantiles)
        if 0.5 not in self.quantiles:
            raise ValueError("config.quantiles must include 0.5 (the median is the point forecast)")
        if list(self.quantiles) != sorted(self.quantiles):
            raise ValueError("config.quantiles must be sorted")
        if self.context_length < 1 or self.prediction_length < 1:
            raise ValueError("context_length and prediction_length must be positive")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["quantiles"] = list(self.quantiles)
        return {"family": self.family, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"family"})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
        values = {k: v for k, v in data.items() if k in known}
        for f in dataclasses.fields(cls):  # JSON turns tuples into lists; restore them
            if f.name in values and isinstance(values[f.name], list) and "tuple" in str(f.type):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def fits_weights_of(self, other: "ModelConfig") -> bool:
        """Whether a model trained with ``other`` can continue with this config: equal settings,
        except those in ``weight_free_fields``."""
        def kept(config: "ModelConfig") -> dict[str, Any]:
            return {k: v for k, v in config.to_dict().items() if k not in self.weight_free_fields}
        return kept(self) == kept(other)

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)


class ForecastModel(nn.Module):
    """Base class of every family: raw values in, quantiles out.

    ``forward(past_values [B, L, C], past_mask [B, L, C] | None, freq_id [B] | None,
    past_exog [B, L, E] | None, future_exog [B, H, E] | None) -> [B, H, C, Q]``.
    NaN is allowed in ``past_values`` only where ``past_mask`` is 0; with no mask, NaN marks
    missing values. Scaling happens inside the model so an exported graph takes raw values.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.config.quantiles

    @property
    def uses_freq_id(self) -> bool:
        """Whether ``forward`` reads ``freq_id`` (an exported graph then takes it as an input): TTM's
        resolution token; a family that never reads it may say so on its class."""
        return bool(getattr(self.config, "resolution_prefix_tuning", False))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(  # pragma: no cover - every family overrides
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def training_loss(
        self,
        past_values: torch.Tensor,
        future_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        future_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
        loss_scale: str = "mad",
    ) -> torch.Tensor:
        """Scale-free pinball loss of ``forward``; families with another native head override it.

        ``loss_scale`` is each window's unit of error (``tsfm.train.losses``: "mad" or "naive")."""
        from tsfm.train.losses import scaled_pinball_loss

        pred = self(past_values, past_mask, freq_id, past_exog, future_exog)
        return scaled_pinball_loss(pred, future_values, self.quantiles, past_values, past_mask, future_mask,
                                   scale_kind=loss_scale)


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
