"""Forecasting with an exported ``.onnx`` file inside the package (``tsfm forecast --model m.onnx``).

``OnnxForecastModel`` puts an edge model behind the ``ForecastModel`` interface, so the
package's own forecasting path (``tsfm.inference.forecast_arrays``: batching, rollout past the
graph's horizon, constant pinning, level interpolation, frames out) runs unchanged on it and a
file gives the same numbers as the model it came from. Only the graph call differs: onnxruntime
on the CPU instead of torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from tsfm.errors import InputError
from tsfm.export.runtime import EdgeModel, ModelFileError, load
from tsfm.forecaster import Forecaster
from tsfm.models.base import ForecastModel, ModelConfig


@dataclass
class OnnxConfig(ModelConfig):
    """What the package reads from an artifact's metadata (not a trainable family)."""

    family: ClassVar[str] = "onnx"
    path: str = ""
    source_family: str = ""

    def to_json(self, path: str | Path) -> None:
        raise InputError("an exported .onnx model is not a checkpoint and cannot be saved as one: copy the .onnx file")


class OnnxForecastModel(ForecastModel):
    """``forward(past_values [B, L, C], past_mask, freq_id) -> [B, H, C, Q]`` through onnxruntime."""

    config_class: ClassVar[type[ModelConfig]] = OnnxConfig

    def __init__(self, edge: EdgeModel) -> None:
        super().__init__(OnnxConfig(context_length=edge.context_length, prediction_length=edge.horizon,
                                    quantiles=edge.quantiles, path=edge.path, source_family=edge.family))
        self.edge = edge

    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if past_exog is not None or future_exog is not None:
            raise InputError("an exported .onnx model takes no covariates: forecast with the checkpoint directory")
        values = past_values.detach().cpu().float().numpy()
        mask = np.ones_like(values) if past_mask is None else past_mask.detach().cpu().float().numpy()
        ids = np.zeros(len(values), np.int64) if freq_id is None else freq_id.detach().cpu().numpy().astype(np.int64)
        ids = np.broadcast_to(ids.reshape(-1), (len(values),)) if ids.size == 1 else ids.reshape(-1)
        out = self.edge.forecast_step(values, mask, ids)
        return torch.from_numpy(out).to(past_values.device)


def load_onnx_model(path: str | Path, num_threads: int | None = None) -> OnnxForecastModel:
    """An exported file as a ``ForecastModel`` (InputError with one line when it cannot serve)."""
    try:
        return OnnxForecastModel(load(path, num_threads=num_threads))
    except ModelFileError as err:
        raise InputError(str(err)) from None


class OnnxForecaster(Forecaster):
    """A ``Forecaster`` whose ``model`` is an exported ``.onnx`` file (CPU, onnxruntime)."""

    def _load_model(self, source: str | None = None) -> None:
        self.device_ = "cpu"
        self.model_ = load_onnx_model(source or self.model, num_threads=self.num_threads)
        self.model_name_ = str(source or self.model)


def forecast_with_onnx(model: str | Path, data: pd.DataFrame | str | Path, **forecaster_args: Any) -> pd.DataFrame:
    """Forecast every series in ``data`` with an exported file: ``unique_id, ds, mean, <quantiles>``.

    ``forecaster_args`` are ``Forecaster``'s (``horizon``, ``quantiles``, ``freq``, ``id_col``...);
    ``device`` is ignored (onnxruntime runs on the CPU).
    """
    forecaster_args.pop("device", None)
    return OnnxForecaster(model=str(model), **forecaster_args).fit(data).predict()
