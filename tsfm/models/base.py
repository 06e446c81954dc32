"""The model contract every family keeps (DESIGN.md §3).

A family is a config dataclass (JSON-serialisable) plus an ``nn.Module`` whose ``forward`` takes
raw values and returns quantiles in the input's scale. The Forecaster, training, evaluation and
export only ever talk to this interface: what a model can do (covariates, frequency token,
fine-tuning modes, export channels) they read from :class:`Capabilities`, which each family's
config declares, never from a family's own config fields.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from tsfm.errors import InputError
from tsfm.nn.inputs import prepare_inputs
from tsfm.nn.losses import scaled_pinball_loss

__all__ = ["DEFAULT_QUANTILES", "Capabilities", "ForecastModel", "ModelConfig", "prepare_inputs"]

FULL_FINETUNING: Mapping[str, tuple[str, ...]] = MappingProxyType({"full": ("",)})


def _capabilities_from(cls: type, fields: dict[str, Any]) -> Any:
    """``Capabilities`` (or a subclass) rebuilt from its pickled fields."""
    return cls(**fields)

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, as its family declares it (``ModelConfig.capabilities``).

    Generic code (the Forecaster, fine-tuning, export, ensembles, the CLI) reads these instead of
    a family's config fields.
    """

    #: covariate channels ``forward`` was trained to read as ``past_exog`` (0: none)
    covariate_channels: int = 0
    #: whether ``forward`` reads known-future covariates (``future_exog``)
    future_covariates: bool = False
    #: whether ``forward`` reads the frequency token ``freq_id`` (an exported graph then takes it)
    freq_token: bool = False
    #: fine-tuning mode -> trainable parameter prefixes ("" = every parameter); a family without a
    #: separately pretrained head offers "full" only
    finetune_modes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: FULL_FINETUNING)
    #: the channel count the model mixes, fixed by its weights (None: any count); an exported graph
    #: is built with exactly this many
    fixed_channels: int | None = None
    #: channels an export must trace the graph with (None: the exporter's default)
    export_example_channels: int | None = None
    #: whether the model can be exported to ONNX (not when it already is an exported graph)
    exportable: bool = True

    def __post_init__(self) -> None:
        modes = {str(mode): tuple(prefixes) for mode, prefixes in self.finetune_modes.items()}
        object.__setattr__(self, "finetune_modes", MappingProxyType(modes))

    def __reduce__(self) -> tuple:
        """Pickled through a plain dict (a read-only mapping view cannot be pickled; it is rebuilt on
        load), so that a fitted Forecaster holding one (``model="auto"``) pickles and deep-copies."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _capabilities_from, (type(self), {**fields, "finetune_modes": dict(self.finetune_modes)})

    @property
    def uses_covariates(self) -> bool:
        return bool(self.covariate_channels or self.future_covariates)


@dataclass
class ModelConfig:
    """Fields every family shares; families subclass and add their hyperparameters."""

    family: ClassVar[str] = ""
    context_length: int = 512
    prediction_length: int = 96
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    # Settings that add no weights, so a checkpoint can continue training with them changed.
    weight_free_fields: ClassVar[tuple[str, ...]] = ()
    # What ``tiny()`` changes: a small config for tests and examples.
    tiny_settings: ClassVar[Mapping[str, Any]] = MappingProxyType({})

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
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"family"})
        if unknown:
            raise InputError(f"unknown {cls.__name__} fields: {', '.join(unknown)} (settings of another model family?)")
        values = {k: v for k, v in data.items() if k in known}
        for f in dataclasses.fields(cls):  # JSON turns tuples into lists; restore them
            if f.name in values and isinstance(values[f.name], list) and "tuple" in str(f.type):
                values[f.name] = tuple(values[f.name])
        return cls(**values)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def fits_weights_of(self, other: ModelConfig) -> bool:
        """Whether a model trained with ``other`` can continue with this config: equal settings,
        except those in ``weight_free_fields``."""
        def kept(config: ModelConfig) -> dict[str, Any]:
            return {k: v for k, v in config.to_dict().items() if k not in self.weight_free_fields}
        return kept(self) == kept(other)

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    @classmethod
    def tiny(cls, **overrides: Any) -> ModelConfig:
        """A small config for tests and examples: ``tiny_settings`` with ``overrides``."""
        return cls(**{**cls.tiny_settings, **overrides})

    @property
    def capabilities(self) -> Capabilities:
        """What a model with this config can do; families declare theirs."""
        return Capabilities()

    @property
    def shortest_context(self) -> int:
        """The fewest past steps any part of the model reads (a suite checks seasons against it)."""
        return self.context_length

    @property
    def description(self) -> str:
        """What the checkpoint is, in a few words (``tsfm models``)."""
        return self.family

    def with_covariates(self, n_targets: int, n_past: int, n_future: int) -> ModelConfig:
        """This config turned into one that reads ``n_past`` past-only and ``n_future`` known-future
        covariates beside ``n_targets`` targets (equal to ``self`` when it already does); the
        pretrained weights load into the new model with ``ForecastModel.load_fitting_weights``."""
        raise InputError(f"model family {self.family} does not take covariates; drop past_exog/future_exog")

    def with_past_covariates(self, n_past: int, n_future: int, **fields: Any) -> ModelConfig:
        """``with_covariates`` of a family that reads past covariates only (as extra variates):
        known-future ones are refused; ``fields`` are its new settings."""
        if n_future:
            raise InputError(f"model family {self.family} cannot use known-future covariates; "
                             "pass them as past covariates or fine-tune ttm")
        return dataclasses.replace(self, **fields)

    # ------------------------------------------------------------------ validation helpers
    def check_at_least(self, minimum: int, *names: str) -> None:
        for name in names:
            if getattr(self, name) < minimum:
                raise InputError(f"{type(self).__name__}.{name} must be >= {minimum}, got {getattr(self, name)}")

    def check_rates(self, *names: str) -> None:
        """Dropout-like settings: each in [0, 1)."""
        for name in names:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{type(self).__name__}.{name} must be in [0, 1), got {getattr(self, name)}")

    def check_choice(self, name: str, choices: Any) -> None:
        value = getattr(self, name)
        if value not in choices:
            raise InputError(f"{name} '{value}' is unknown; use one of {', '.join(choices)}")


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
    def capabilities(self) -> Capabilities:
        return self.config.capabilities

    def load_fitting_weights(self, state: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
        """Load the weights of ``state`` that fit (same name and shape), e.g. a pretrained model's
        into its covariate-aware version; parts left without weights then start as no-ops where the
        family can (:meth:`start_new_parts`). Returns the missing, unexpected and mismatched keys."""
        target = self.state_dict()
        fitting = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
        mismatched = sorted(k for k in state if k in target and target[k].shape != state[k].shape)
        missing, unexpected = self.load_state_dict(fitting, strict=False)
        self.start_new_parts(set(missing))
        return {"missing_keys": sorted(missing), "unexpected_keys": sorted(unexpected), "mismatched_keys": mismatched}

    def start_new_parts(self, missing: set[str]) -> None:
        """Make parts whose weights (``missing``) a checkpoint did not have start as exact no-ops."""

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

        ``loss_scale`` is each window's unit of error (``tsfm.nn.losses``: "mad" or "naive")."""
        pred = self(past_values, past_mask, freq_id, past_exog, future_exog)
        return scaled_pinball_loss(pred, future_values, self.quantiles, past_values, past_mask, future_mask,
                                   scale_kind=loss_scale)

