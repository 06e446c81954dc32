"""The scikit-learn-style ``Forecaster``: pandas in, pandas out, any registered model behind it.

Zero-shot ``fit`` validates the frame, regularises it onto its time grid and remembers each
series' context; ``predict`` runs the pretrained model. Constructor arguments are stored
unchanged (scikit-learn's ``clone`` relies on it); validation happens in ``fit``.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.errors import InputError

FORECASTER_FILE = "forecaster.json"


class NotFittedError(ValueError, AttributeError):
    """Raised when ``predict`` runs before ``fit`` (same bases as scikit-learn's)."""


def _quantile_names(quantiles: Sequence[float | str]) -> tuple[list[float], list[str]]:
    """Levels as floats and column names as the user wrote them ("0.1", not 0.1000000001)."""
    levels, names = [], []
    for q in quantiles:
        name = q if isinstance(q, str) else repr(float(q))
        try:
            value = float(q)
        except (TypeError, ValueError):
            raise InputError(f"quantile '{q}' is not a number: give levels like 0.1,0.5,0.9") from None
        if not 0.0 < value < 1.0:
            raise InputError(f"quantile {q} is outside (0, 1): give levels like 0.1,0.5,0.9")
        levels.append(value)
        names.append(name.strip())
    if len(set(levels)) != len(levels):
        raise InputError("quantile levels must be distinct")
    return levels, names


class Forecaster:
    """Zero-shot (and fine-tunable) forecaster with scikit-learn conventions.

    >>> f = Forecaster(model="ttm", horizon=12).fit(df)   # doctest: +SKIP
    >>> f.predict()                                         # unique_id, ds, mean, "0.1", "0.5", "0.9"
    """

    def __init__(
        self,
        model: str = "ttm",
        horizon: int | None = None,
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
        context_length: int | None = None,
        freq: str | None = None,
        id_col: str | None = None,
        time_col: str | None = None,
        target: str | Sequence[str] | None = None,
        past_exog: Sequence[str] | None = None,
        future_exog: Sequence[str] | None = None,
        multivariate: bool = False,
        fill: str = "mask",
        device: str = "cpu",
        batch_size: int = 256,
        num_threads: int | None = None,
    ) -> None:
        self.model = model
        self.horizon = horizon
        self.quantiles = quantiles
        self.context_length = context_length
        self.freq = freq
        self.id_col = id_col
        self.time_col = time_col
        self.target = target
        self.past_exog = past_exog
        self.future_exog = future_exog
        self.multivariate = multivariate
        self.fill = fill
        self.device = device
        self.batch_size = batch_size
        self.num_threads = num_threads

    # ----------------------------------------------------------------- scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Forecaster":
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter '{key}' for Forecaster; valid: {', '.join(sorted(valid))}")
            setattr(self, key, value)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(Forecaster.__init__).parameters.values()}
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
        return f"Forecaster({', '.join(changed)})"

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                "This Forecaster instance is not fitted yet. Call 'fit' with appropriate arguments before using this estimator."
            )

    # ----------------------------------------------------------------- fitting
    def _load_model(self) -> None:
        import torch

        from tsfm.hub import load_model

        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise InputError(f"unknown device '{self.device}': use cpu, cuda or auto")
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available: use --device cpu")
        self.device_ = device
        self.model_ = load_model(self.model, device=device)

    def _series(self, df: pd.DataFrame | str | Path):
        from tsfm.data.frames import load_series

        min_length = 3
        return load_series(
            df, id_col=self.id_col, time_col=self.time_col, target=self.target,
            past_exog=list(self.past_exog) if self.past_exog else None,
            future_exog=list(self.future_exog) if self.future_exog else None,
            freq=self.freq, multivariate=self.multivariate, fill=self.fill, min_length=min_length,
        )

    def fit(self, df: pd.DataFrame | str | Path, y: Any = None) -> "Forecaster":
        """Validate ``df`` (long or wide), load the model and remember each series' context."""
        levels, names = _quantile_names(self.quantiles)
        if self.horizon is not None and (not isinstance(self.horizon, (int, np.integer)) or self.horizon < 1):
            raise InputError(f"horizon must be a positive integer, got {self.horizon!r}")
        if self.batch_size < 1:
            raise InputError("batch_size must be positive")
        if not hasattr(self, "model_") or getattr(self, "_model_source", None) != self.model:
            self._load_model()
            self._model_source = self.model
        series = self._series(df)
        self.series_ = series
        self.freq_ = series.freq
        self.horizon_ = int(self.horizon) if self.horizon is not None else series.freq_info.horizon
        self.levels_, self.quantile_names_ = levels, names
        self.series_ids_ = list(series.ids)
        return self

    # ----------------------------------------------------------------- predicting
    def _forecast(self, series, h: int, levels: Sequence[float] | None = None,
                  names: Sequence[str] | None = None) -> pd.DataFrame:
        from tsfm.data.frames import forecast_frame
        from tsfm.data.windows import inference_windows
        from tsfm.inference import forecast_arrays, interpolate_levels, pin_constants

        context = self.context_length or self.model_.config.context_length
        context = min(int(context), self.model_.config.context_length)
        windows = inference_windows(series, context)
        past_values, past_mask, freq_id = windows["past_values"], windows["past_mask"], windows["freq_id"]
        raw = forecast_arrays(self.model_, past_values, past_mask, freq_id, h, self.batch_size, self.device_)
        raw = pin_constants(raw, past_values, past_mask)
        model_levels = list(self.model_.quantiles)
        levels = list(levels if levels is not None else self.levels_)
        names = list(names if names is not None else self.quantile_names_)
        quantiles = interpolate_levels(raw, model_levels, levels)
        median = interpolate_levels(raw, model_levels, [0.5])[..., 0]
        return forecast_frame(series, quantiles, levels, names, mean=median)

    def predict(
        self, df: pd.DataFrame | str | Path | None = None, h: int | None = None, X_future: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Forecast the fitted series (or ``df``'s own series): ``unique_id, ds, mean, <quantiles>``."""
        self._check_fitted()
        if h is not None and (not isinstance(h, (int, np.integer)) or h < 1):
            raise InputError(f"h must be a positive integer, got {h!r}")
        series = self.series_ if df is None else self._series(df)
        if X_future is not None and not getattr(self.model_.config, "num_exog_channels", 0):
            print("warning: this model was not trained with covariates; X_future is ignored "
                  "(fine-tune with covariates first)", file=sys.stderr)
        return self._forecast(series, int(h) if h is not None else self.horizon_)

    def predict_band(self, h: int | None = None, max_series: int | None = None) -> pd.DataFrame:
        """Median and 80% band (levels 0.1/0.5/0.9) of the fitted series, whatever ``quantiles`` is."""
        self._check_fitted()
        series = self.series_
        if max_series is not None and len(series) > max_series:
            series = series.subset(list(range(max_series)))
        return self._forecast(series, int(h or self.horizon_), (0.1, 0.5, 0.9), ("0.1", "0.5", "0.9"))

    def cross_validation(
        self, df: pd.DataFrame | str | Path, h: int | None = None, n_windows: int = 1, step_size: int | None = None
    ) -> pd.DataFrame:
        """Rolling-origin backtest with Nixtla's columns: the forecasts plus ``cutoff`` and ``y``.

        Window k (oldest first) forecasts ``h`` points from everything before its cutoff.
        """
        if not self.__sklearn_is_fitted__():
            self.fit(df)
        series = self._series(df)
        h = int(h or self.horizon_)
        step = int(step_size or h)
        frames = []
        for k in range(n_windows - 1, -1, -1):
            head, tails = series.split_last(h + k * step)
            forecast = self._forecast(head, h)
            cutoffs = pd.Series([head.last_timestamp(i) for i in range(len(head))], index=head.ids)
            forecast.insert(2, "cutoff", forecast["unique_id"].map(cutoffs) if not head.ids_as_channels
                            else head.last_timestamp(0))
            forecast["y"] = np.concatenate([np.asarray(tail)[:h].T.ravel() for tail in tails])
            frames.append(forecast)
        return pd.concat(frames, ignore_index=True)

    def evaluate(
        self, df: pd.DataFrame | str | Path, h: int | None = None, n_windows: int = 1, m: int | None = None
    ) -> dict[str, float]:
        """MASE, sMAPE (0-200), WQL and 10-90% coverage of a backtest over the last ``n_windows`` x ``h``.

        ``m`` is the seasonal period of the MASE scale (default: from the frequency).
        """
        from tsfm.evaluation import evaluate_forecasts

        cv = self.cross_validation(df, h=h, n_windows=n_windows)
        series = self._series(df)
        if series.n_channels > 1:
            raise InputError("evaluate scores univariate series: pass one --target per series")
        keys = ["unique_id", "ds", "cutoff"]
        forecast = cv.drop(columns=["y", "mean"]).rename(columns=dict(zip(self.quantile_names_, map(str, self.levels_))))
        return evaluate_forecasts(forecast, cv[keys + ["y"]], series.to_frame(),
                                  int(m or series.freq_info.season), self.levels_)

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Model checkpoint + the Forecaster's parameters, so ``Forecaster.load`` rebuilds it."""
        from tsfm.hub import save_pretrained

        self._check_fitted()
        out = Path(directory)
        save_pretrained(self.model_, out)
        params = self.get_params()
        params["model"] = None  # the checkpoint is this directory
        params["quantiles"] = list(params["quantiles"])
        (out / FORECASTER_FILE).write_text(json.dumps(params, indent=2, default=list) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """A Forecaster on the checkpoint in ``directory`` (fit it on data before predicting)."""
        path = Path(directory)
        params = {}
        if (path / FORECASTER_FILE).is_file():
            params = json.loads((path / FORECASTER_FILE).read_text())
        params["model"] = str(path)
        if isinstance(params.get("quantiles"), list):
            params["quantiles"] = tuple(params["quantiles"])
        forecaster = cls(**params)
        forecaster._load_model()
        forecaster._model_source = forecaster.model
        return forecaster

    def to_gluonts_predictor(self):
        """A GluonTS ``Predictor`` yielding ``QuantileForecast`` objects (for GluonTS backtesting)."""
        from tsfm.gluonts_predictor import TSFMPredictor

        self._check_fitted()
        return TSFMPredictor(self)
