"""Model families, their shared contract and the registry."""

from tsfm.models.base import DEFAULT_QUANTILES, ForecastModel, ModelConfig
from tsfm.models.registry import FAMILIES, build_model, get_family

__all__ = ["DEFAULT_QUANTILES", "FAMILIES", "ForecastModel", "ModelConfig", "build_model", "get_family"]
