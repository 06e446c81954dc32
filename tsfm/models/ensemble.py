"""Ensemble: several checkpoints of the same contract, their quantiles averaged level by level.

Two TTMs pretrained by different recipes (one anchored on the last value, one not) make different
errors, and averaging their forecasts beats either alone (ttm-96 averaged with its anchored version
in the `ttm` suite's short-history slot: 0.544 / 0.551 relative MASE / WQL on the eval set against
0.546 / 0.552 with ttm-96 alone; CHANGELOG.md, 2026-12-03). The
average is taken per quantile level (Vincentization, the usual way to pool quantile forecasts):
a weighted mean of sorted quantile vectors is sorted, and a median stays a median-like point
forecast. Members share quantiles; their contexts and horizons may differ. The ensemble reads the
longest context, and a member with a shorter context reads the most recent part of the window,
so a long-context model can be pooled with a short-context one that reads the recent past
differently. ``horizon_rule`` says what it forecasts:

- "shortest" (the default): the shortest member horizon, every member forecasting every step
  (longer horizons are rolled out by the Forecaster, as for any model, each step of it costing
  every member a call per quantile path);
- "longest": the longest member horizon in one call of each member. A shorter member covers
  only the steps it forecasts directly: its weight fades linearly over the last quarter of its
  horizon (no jump in the forecast) and the longer members carry on alone. ttm-512-ensemble
  pools ttm-512 (96 steps) with ttm-96-wide (32) this way, at about twice ttm-512's cost at any
  horizon up to 96 instead of 19 calls of each at horizon 96.

The ensemble is itself a ``ForecastModel``: one checkpoint that the Forecaster, suites,
fine-tuning and ONNX export use like any other. Its ``config.json`` holds every member's config
and ``model.safetensors`` their weights under ``members.<i>.``: a folder that stands alone, which
is how an ensemble you build, fine-tune or ``Forecaster.save`` is written. A shipped ensemble
instead references its members: ``member_checkpoints`` in its config names, per member, a
checkpoint (a shipped name, or a folder relative to the ensemble's) and the SHA-256 of that
checkpoint's weights file, and ``tsfm.hub.load_model`` reads the member's weights from there, so
each shipped weight is stored once. The digest makes a reference exact: a member re-released
with other weights stops the ensemble from loading instead of changing its forecasts unseen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from tsfm.errors import InputError
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm.models.registry import build_model, get_family


def member_config(data: dict[str, Any]) -> ModelConfig:
    """A member's config object from its dict (which names its family)."""
    if not isinstance(data, dict) or "family" not in data:
        raise InputError("each ensemble member must be a config dict with a 'family'")
    config_cls, _ = get_family(data["family"]).load()
    return config_cls.from_dict(data)


HORIZON_RULES = ("shortest", "longest")


@dataclass
class EnsembleConfig(ModelConfig):
    """Members' configs (complete dicts, as their ``to_dict`` writes them), relative weights and,
    for provenance, the names the members were loaded by (shipped names or directories)."""

    family: ClassVar[str] = "ensemble"
    members: tuple[dict, ...] = ()
    weights: tuple[float, ...] | None = None  # relative; None = equal
    labels: tuple[str, ...] | None = None
    horizon_rule: str = "shortest"  # "shortest": every member forecasts every step; "longest": see Ensemble

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.members) < 2:
            raise InputError("an ensemble needs at least two members")
        configs = [member_config(m) for m in self.members]
        self.members = tuple(c.to_dict() for c in configs)  # complete and normalised: stable on reload
        if self.horizon_rule not in HORIZON_RULES:
            raise InputError(f"ensemble horizon_rule must be one of {', '.join(HORIZON_RULES)}, "
                             f"got {self.horizon_rule!r}")
        context = max(c.context_length for c in configs)
        horizons = [c.prediction_length for c in configs]
        horizon = min(horizons) if self.horizon_rule == "shortest" else max(horizons)
        if (self.context_length, self.prediction_length) != (context, horizon):
            raise InputError(
                f"an ensemble reads its members' longest context ({context}) and forecasts their {self.horizon_rule} "
                f"horizon ({horizon}); this one says context {self.context_length}, horizon {self.prediction_length}")
        for i, config in enumerate(configs):
            if config.quantiles != self.quantiles:
                raise InputError(
                    f"ensemble member {i} ({config.family}) has quantiles {list(config.quantiles)}; the ensemble "
                    f"has {list(self.quantiles)}: members must agree")
            if config.capabilities.uses_covariates or config.capabilities.fixed_channels is not None:
                raise InputError(f"ensemble member {i} mixes channels or takes covariates: ensembles take only "
                                 "channel-independent members without covariates")
        if self.weights is not None:
            self.weights = tuple(float(w) for w in self.weights)
            if len(self.weights) != len(self.members) or min(self.weights) < 0 or sum(self.weights) <= 0:
                raise InputError("ensemble weights must be one non-negative number per member, not all zero")
        if self.labels is not None and len(self.labels) != len(self.members):
            raise InputError("ensemble labels must name every member")

    @property
    def shortest_context(self) -> int:
        return min(member_config(m).shortest_context for m in self.members)

    @property
    def description(self) -> str:
        return self.family + (f" of {' + '.join(self.labels)}" if self.labels else "")

    @classmethod
    def of(cls, configs: Sequence[ModelConfig], weights: Sequence[float] | None = None,
           labels: Sequence[str] | None = None, horizon_rule: str = "shortest") -> EnsembleConfig:
        """The ensemble of models with these configs: their longest context, their shortest (or with
        ``horizon_rule="longest"`` longest) horizon, shared quantiles."""
        first = configs[0]
        pick = max if horizon_rule == "longest" else min
        return cls(context_length=max(c.context_length for c in configs), horizon_rule=horizon_rule,
                   prediction_length=pick(c.prediction_length for c in configs), quantiles=first.quantiles,
                   members=tuple(c.to_dict() for c in configs),
                   weights=None if weights is None else tuple(weights),
                   labels=None if labels is None else tuple(str(label) for label in labels))

    @property
    def normalised_weights(self) -> tuple[float, ...]:
        raw = self.weights or (1.0,) * len(self.members)
        return tuple(w / sum(raw) for w in raw)

    @property
    def capabilities(self) -> Capabilities:
        """The frequency token when any member reads it; the largest channel count a member must be
        traced with; the fine-tuning modes every member offers, each training those parts of every member."""
        members = [member_config(m).capabilities for m in self.members]
        examples = [c.export_example_channels for c in members if c.export_example_channels]
        common = [mode for mode in members[0].finetune_modes if all(mode in c.finetune_modes for c in members)]
        modes = {mode: tuple(f"members.{i}" + (f".{p}" if p else "") for i, c in enumerate(members)
                             for p in c.finetune_modes[mode]) for mode in common}
        return Capabilities(freq_token=any(c.freq_token for c in members), finetune_modes=modes,
                            export_example_channels=max(examples) if examples else None)


class Ensemble(ForecastModel):
    """Members' forecasts, averaged quantile level by quantile level with the config's weights."""

    config_class = EnsembleConfig

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__(config)
        self.members = nn.ModuleList(build_model(dict(m)) for m in config.members)
        steps = torch.arange(config.prediction_length, dtype=torch.float32)
        reach = []  # [members, H]: each member's share of each step before the weights
        for member in self.members:
            h = member.config.prediction_length
            if h >= config.prediction_length:
                reach.append(torch.ones_like(steps))
            else:  # fades out over the last quarter of its own horizon, then gives way to the longer members
                fade = max(h // 4, 1)
                reach.append(((h - steps) / fade).clamp(0.0, 1.0))
        weights = torch.tensor(config.normalised_weights, dtype=torch.float32)[:, None] * torch.stack(reach)
        self.register_buffer("step_weights", weights / weights.sum(dim=0), persistent=False)

    @classmethod
    def from_models(cls, models: Sequence[ForecastModel], weights: Sequence[float] | None = None,
                    labels: Sequence[str] | None = None, horizon_rule: str = "shortest") -> Ensemble:
        """An ensemble holding copies of the weights of ``models`` (named ``labels`` in its config)."""
        ensemble = cls(EnsembleConfig.of([m.config for m in models], weights, labels, horizon_rule))
        for member, model in zip(ensemble.members, models):
            member.load_state_dict(model.state_dict(), strict=True)
        return ensemble.eval()

    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if past_exog is not None or future_exog is not None:
            raise InputError("an ensemble takes no covariates")
        horizon = self.config.prediction_length
        total = None
        for weights, member in zip(self.step_weights, self.members):
            context = member.config.context_length  # a shorter-context member reads the most recent steps
            values, mask = past_values[:, -context:], None if past_mask is None else past_mask[:, -context:]
            out = member(values, mask, freq_id)[:, :horizon]
            if out.shape[1] < horizon:  # "longest": past its own horizon the member's weight is zero
                out = torch.cat([out, out[:, -1:].expand(-1, horizon - out.shape[1], -1, -1)], dim=1)
            part = weights[None, :, None, None].to(out.dtype) * out
            total = part if total is None else total + part
        return total


# ----------------------------------------------------------------------------- checkpoint storage
MEMBER_CHECKPOINTS = "member_checkpoints"  # config.json key of members stored as checkpoints of their own


def member_reference(checkpoint: str, weights: bytes) -> dict[str, str]:
    """The ``member_checkpoints`` entry naming ``checkpoint`` (whose weights file holds ``weights``)."""
    return {"checkpoint": str(checkpoint), "sha256": hashlib.sha256(weights).hexdigest()}


def referencing_config(config: EnsembleConfig, references: Sequence[Mapping[str, str] | None]) -> dict[str, Any]:
    """The ``config.json`` of an ensemble whose member ``i`` is stored as ``references[i]`` (a
    ``member_reference``), or in the ensemble's own weights file where that is None."""
    if len(references) != len(config.members):
        raise InputError("name one checkpoint (or None) per ensemble member")
    return {**config.to_dict(), MEMBER_CHECKPOINTS: [None if r is None else dict(r) for r in references]}


def split_member_references(data: dict[str, Any]) -> tuple[dict[str, Any], dict[int, dict[str, str]]]:
    """A stored config without its member references, and those references by member index."""
    if MEMBER_CHECKPOINTS not in data:
        return data, {}
    data = dict(data)
    references = data.pop(MEMBER_CHECKPOINTS)
    if (data.get("family") != EnsembleConfig.family or not isinstance(references, list)
            or len(references) != len(data.get("members", ()))):
        raise InputError(f"'{MEMBER_CHECKPOINTS}' must be a list of one entry per member of an ensemble config")
    found = {i: r for i, r in enumerate(references) if r is not None}
    for i, reference in found.items():
        if not isinstance(reference, dict) or not {"checkpoint", "sha256"} <= set(reference):
            raise InputError(f"ensemble member {i}: a member checkpoint is {{\"checkpoint\": ..., \"sha256\": ...}}")
    return data, found


def referenced_member_state(data: dict[str, Any], index: int, reference: Mapping[str, str], config_text: str,
                            weights: bytes) -> dict[str, Any]:
    """Member ``index``'s weights, named as in the ensemble (``members.<index>.``), from the checkpoint
    its reference names (``config_text`` and ``weights``: that checkpoint's files), after checking
    that it is exactly the member the ensemble was released with."""
    from safetensors.torch import load

    name = reference["checkpoint"]
    if hashlib.sha256(weights).hexdigest() != reference["sha256"]:
        raise InputError(f"ensemble member {index} references '{name}', whose weights are not the ones the ensemble "
                         "was released with (SHA-256 differs): re-release the ensemble (tools/release.py ensemble)")
    try:
        stored = member_config(json.loads(config_text)).to_dict()
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"ensemble member {index}: bad config in '{name}': {err}") from None
    if stored != member_config(data["members"][index]).to_dict():
        raise InputError(f"ensemble member {index} references '{name}', whose config is not the member's")
    return {f"members.{index}.{key}": value for key, value in load(weights).items()}
