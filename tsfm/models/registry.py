"""One registry of model families: name -> config class and module class, imported lazily.

Lazy imports keep `tsfm forecast` fast: only the family that is used gets imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tsfm.models.base import ForecastModel, ModelConfig


@dataclass(frozen=True)
class Family:
    name: str
    module: str  # import path of the file that defines the family
    config_class: str
    model_class: str
    summary: str
    composite: bool = False  # built from other families' checkpoints, never trained from scratch

    def load(self) -> tuple[type[ModelConfig], type[ForecastModel]]:
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config_class), getattr(mod, self.model_class)


FAMILIES: dict[str, Family] = {
    "ttm": Family(
        "ttm", "tsfm.models.ttm", "TTMConfig", "TTM",
        "Tiny Time Mixers: patch/feature MLP-mixer with adaptive patching and resolution tokens",
    ),
    "itransformer": Family(
        "itransformer", "tsfm.models.itransformer", "ITransformerConfig", "ITransformer",
        "iTransformer: each variate's lookback is one token; attention mixes variates (any count)",
    ),
    "s-mamba": Family(
        "s-mamba", "tsfm.models.s_mamba", "SMambaConfig", "SMamba",
        "S-Mamba: variate tokens mixed by a bidirectional Mamba (selective scan) plus FFN",
    ),
    "moirai-moe": Family(
        "moirai-moe", "tsfm.models.moirai_moe", "MoiraiMoEConfig", "MoiraiMoE",
        "Moirai-MoE: decoder-only patch transformer, sparse mixture-of-experts FFNs, mixture head",
    ),
    "spacetime": Family(
        "spacetime", "tsfm.models.spacetime", "SpaceTimeConfig", "SpaceTime",
        "SpaceTime: companion-matrix SSMs with preprocessing SSMs and a closed-loop decoder",
    ),
    "ensemble": Family(
        "ensemble", "tsfm.models.ensemble", "EnsembleConfig", "Ensemble",
        "Ensemble: checkpoints of other families, their quantiles averaged level by level",
        composite=True,
    ),
}


def get_family(name: str) -> Family:
    key = name.lower().replace("_", "-")
    if key not in FAMILIES:
        raise KeyError(f"unknown model family '{name}'; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[key]


def build_config(config: dict) -> ModelConfig:
    """The config object of a config dict carrying its ``family``."""
    if not config.get("family"):
        raise ValueError("config dict has no 'family'")
    config_cls, _ = get_family(config["family"]).load()
    return config_cls.from_dict(config)


def build_model(config: ModelConfig | dict, family: str | None = None) -> ForecastModel:
    """Instantiate a model from a config object or a config dict carrying its ``family``."""
    if isinstance(config, dict):
        name = family or config.get("family")
        if not name:
            raise ValueError("config dict has no 'family'")
        config_cls, model_cls = get_family(name).load()
        config = config_cls.from_dict(config)
    else:
        _, model_cls = get_family(family or config.family).load()
    return model_cls(config)
