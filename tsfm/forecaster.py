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
CONTEXT_FILE = "context.npz"  # the fitted series, so that a loaded Forecaster predicts without fit
MAX_HORIZON = 10_000
"""Longest horizon ``fit``/``predict`` accept. Past the model's own horizon every step is forecast
from earlier forecasts (a rollout of Q paths), so time grows with H and the forecast fades to the
paths' spread. 10,000 steps is 27 years of daily data or 14 months of hourly data."""


def _names(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def _checkpoint_roles(model: str | Path) -> dict[str, list[str]]:
    """Covariate columns a fine-tuned checkpoint directory was trained with (its forecaster.json)."""
    path = Path(str(model)) / FORECASTER_FILE
    if not path.is_file():
        return {}
    try:
        params = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {key: _names(params.get(key)) for key in ("past_exog", "future_exog")}


def _check_steps(name: str, value: Any) -> None:
    """``horizon``/``h``: a positive integer no larger than ``MAX_HORIZON`` (InputError otherwise)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    if value > MAX_HORIZON:
        raise InputError(f"{name}={value} is above the limit of {MAX_HORIZON} steps: past the model's own horizon "
                         "each step is forecast from earlier forecasts (slow, and accuracy fades); "
                         "forecast a coarser frequency instead")


def _check_future_fits(series, h: int) -> None:
    """InputError when the next ``h`` stamps of a series run past the dates pandas can hold
    (year 2262): checked before the model runs, not after."""
    if len(series) == 0 or series.step_index:
        return
    try:  # an upper bound first: the latest start plus the longest series plus h steps
        max(series.starts) + (int(series.lengths.max()) - 1 + h) * series.offset
        return
    except (OverflowError, ValueError):  # pandas' OutOfBoundsDatetime is a ValueError
        pass
    for i in range(len(series)):
        try:
            series.future_index(i, h)
        except (OverflowError, ValueError):
            raise InputError(f"{h} steps of {series.freq} after '{series.ids[i]}' ends run past "
                             f"{pd.Timestamp.max:%Y-%m-%d}, the last date pandas can hold: use a shorter horizon") from None


class NotFittedError(ValueError, AttributeError):
    """Raised when ``predict`` runs before ``fit`` (same bases as scikit-learn's)."""


def _quantile_names(quantiles: Sequence[float | str] | str | float) -> tuple[list[float], list[str]]:
    """Levels as floats and column names as the user wrote them ("0.1", not 0.1000000001).

    A string is a comma-separated list (``"0.1,0.9"``), a lone number is one level; an empty
    list is refused here, before any model runs.
    """
    if isinstance(quantiles, str):
        quantiles = [part.strip() for part in quantiles.split(",") if part.strip()]
    elif isinstance(quantiles, (int, float, np.integer, np.floating)):
        quantiles = [quantiles]
    levels, names = [], []
    if len(quantiles) == 0:
        raise InputError("quantiles is empty: give levels like 0.1,0.5,0.9")
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

    ``nonnegative``: None (default) floors at zero the forecasts of series whose context has no
    negative value (the network alone can dip below a hard zero floor); True floors every series,
    False none.

    ``log_scale``: which series are forecast in log space (their forecast taken back with exp):
    "seasonal" (strictly positive contexts of a seasonal frequency, spanning at most a factor of
    100: ``tsfm.inference.log_scale_channels``), "positive" (every such context) or "never".
    None (default) takes the model's choice: the ``ttm`` suite says "seasonal" (it forecasts
    multiplicative seasonality better that way, docs/training.md); a single checkpoint, an
    ``.onnx`` file or a fine-tuned model says "never".
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
        nonnegative: bool | None = None,
        log_scale: str | None = None,
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
        self.nonnegative = nonnegative
        self.log_scale = log_scale
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

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 estimator tags (``check_is_fitted`` reads them); sklearn is imported only here."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)

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
    def _device(self) -> str:
        """The torch device ``device`` asks for (InputError when it is unknown or unavailable)."""
        import torch

        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise InputError(f"unknown device '{self.device}': use cpu, cuda or auto")
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA device is available: use --device cpu")
        return device

    def _check_source(self) -> None:
        """Fail on an unknown model or device before reading any data (one line naming the valid ones)."""
        from tsfm.hub import resolve

        self._device()
        if not str(self.model).lower().endswith(".onnx"):
            resolve(self.model)

    def _load_model(self, source: str | None = None) -> None:
        """Load ``source`` (default: ``model``; a suite's variant when ``fit`` chose one)."""
        import torch

        from tsfm.hub import load_model

        source = str(self.model) if source is None else source
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        self.device_ = self._device()
        if source.lower().endswith(".onnx"):  # an exported file: onnxruntime on the CPU
            from tsfm.export.onnx_model import load_onnx_model

            self.device_, self.model_ = "cpu", load_onnx_model(source, num_threads=self.num_threads)
        else:
            self.model_ = load_model(source, device=self.device_)
        self.model_name_ = source
        self.__dict__.pop("_finetuned_from", None)  # fresh weights: no fine-tune to keep

    def _series(self, df: pd.DataFrame | str | Path):
        from tsfm.data.loading import load_series

        min_length = 3
        past, future = self._covariate_roles()
        return load_series(
            df, id_col=self.id_col, time_col=self.time_col, target=self.target,
            past_exog=past or None, future_exog=future or None,
            freq=self.freq, multivariate=self.multivariate, fill=self.fill, min_length=min_length,
        )

    def _covariate_roles(self) -> tuple[list[str], list[str]]:
        """Covariate column names: the constructor's, else those a fine-tuned checkpoint was trained with."""
        saved = _checkpoint_roles(self.model)
        past = _names(self.past_exog) if self.past_exog is not None else saved.get("past_exog", [])
        future = _names(self.future_exog) if self.future_exog is not None else saved.get("future_exog", [])
        return past, future

    def _load_for(self, series) -> None:
        """Load the model for these series: a suite (``ttm``) picks its variant by their resolution,
        typical observed length (at most ``context_length``) and season. A fine-tuned model is kept."""
        from tsfm.hub import select_checkpoint

        lengths = np.array([np.isfinite(v).any(axis=1).sum() for v in series.values])
        self.history_length_ = float(np.median(lengths))
        usable = min(self.history_length_, self.context_length or np.inf)
        chosen = select_checkpoint(self.model, usable, series.freq_info.season, series.freq_info.name)
        if hasattr(self, "model_") and (getattr(self, "_finetuned_from", None) == self.model
                                        or getattr(self, "model_name_", None) == chosen):
            return
        self._load_model(chosen)

    def _log_scale_mode(self) -> str:
        """``log_scale``, else the suite's choice for zero-shot forecasts ("never" once fine-tuned or with covariates)."""
        from tsfm.hub import load_suite

        if self.log_scale is not None:
            return self.log_scale
        if getattr(self, "_finetuned_from", None) is not None or self._uses_covariates():
            return "never"
        suite = None if str(self.model).lower().endswith(".onnx") else load_suite(self.model)
        return suite.log_scale if suite is not None else "never"

    def _uses_covariates(self) -> bool:
        return bool(getattr(self.model_.config, "num_exog_channels", 0))

    def fit(self, df: pd.DataFrame | str | Path, y: Any = None) -> "Forecaster":
        """Validate ``df`` (long or wide), load the model and remember each series' context."""
        levels, names = _quantile_names(self.quantiles)
        if self.horizon is not None:
            _check_steps("horizon", self.horizon)
        if self.batch_size < 1:
            raise InputError("batch_size must be positive")
        if self.num_threads is not None and (not isinstance(self.num_threads, (int, np.integer)) or self.num_threads < 1):
            raise InputError(f"num_threads must be a positive integer (or None), got {self.num_threads!r}")
        if self.nonnegative not in (None, True, False):
            raise InputError(f"nonnegative must be None (decide per series), True or False, got {self.nonnegative!r}")
        from tsfm.inference import LOG_SCALE_MODES

        if self.log_scale is not None and self.log_scale not in LOG_SCALE_MODES:
            raise InputError(f"log_scale must be None (the model's choice) or one of {', '.join(LOG_SCALE_MODES)}, "
                             f"got {self.log_scale!r}")
        self._check_source()
        series = self._series(df)
        self._load_for(series)
        self._check_levels(levels)
        self._remember(series, levels, names)
        _check_future_fits(series, self.horizon_)
        return self

    def _check_levels(self, levels: Sequence[float]) -> None:
        """Levels outside the model's quantile range fail now, before the model runs (no extrapolation)."""
        model_levels = [float(q) for q in self.model_.quantiles]
        lo, hi = min(model_levels), max(model_levels)
        bad = [q for q in levels if not lo - 1e-9 <= q <= hi + 1e-9]
        if bad:
            raise InputError(
                f"quantile levels {', '.join(f'{q:g}' for q in bad)} are outside the model's range [{lo:g}, {hi:g}]: "
                f"ask for levels inside it (--level up to {round(100 * (hi - lo))})"
            )

    def _remember(self, series, levels: list[float], names: list[str]) -> None:
        """The fitted attributes: the series' context, frequency, horizon and quantile columns."""
        self.series_ = series
        self.freq_ = series.freq
        self.horizon_ = int(self.horizon) if self.horizon is not None else series.freq_info.horizon
        self.levels_, self.quantile_names_ = levels, names
        self.series_ids_ = list(series.ids)
        self.X_future_ = None
        if not hasattr(self, "history_length_"):
            self.history_length_ = float(np.median([np.isfinite(v).any(axis=1).sum() for v in series.values]))

    def finetune(
        self,
        df: pd.DataFrame | str | Path,
        fraction: float = 0.1,
        mode: str = "head",
        max_epochs: int = 20,
        max_steps: int | None = None,
        val_size: int | None = None,
        learning_rate: float | None = None,
        batch_size: int = 64,
        patience: int = 3,
        progress: bool = True,
        X_future: pd.DataFrame | None = None,
    ) -> "Forecaster":
        """Few-shot fine-tuning on ``df`` (Lightning), then ready to ``predict`` its series; returns self.

        Starts from the weights ``model`` names, trains on the last ``fraction`` of each series'
        windows with the last ``val_size`` points held out, stops early on the validation loss and
        keeps the best epoch, or the zero-shot weights when no epoch beat them
        (``finetune_report_.kept``). ``mode``: "head" (TTM: backbone frozen, decoder + head
        trained), "decoder" or "full". Named ``past_exog`` / ``future_exog`` columns turn a
        univariate model into a covariate-aware one. ``X_future`` (known-future covariates for
        the next ``horizon`` steps) is checked now and used by ``predict()``.
        """
        from tsfm.train.finetune import finetune_model

        self.__dict__.pop("model_", None)  # always from the named weights, never on top of an earlier fine-tune
        self.fit(df)
        context = min(int(self.context_length or self.model_.config.context_length), self.model_.config.context_length)
        self.model_, self.finetune_report_ = finetune_model(
            self.model_, self.series_, self.horizon_, context_length=context, fraction=fraction, mode=mode,
            max_epochs=max_epochs, max_steps=max_steps, val_size=val_size, learning_rate=learning_rate,
            batch_size=batch_size, patience=patience, progress=progress, device=self.device_,
        )
        self._finetuned_from = self.model
        if progress:
            print(self.finetune_report_.summary(), file=sys.stderr)
        if X_future is not None:
            self._future_covariates(self.series_, self.horizon_, X_future)  # fail now, not at predict
            self.X_future_ = X_future
        return self

    # ----------------------------------------------------------------- predicting
    def _forecast(self, series, h: int, levels: Sequence[float] | None = None,
                  names: Sequence[str] | None = None, X_future: Any = None,
                  future_exog: np.ndarray | None = None) -> pd.DataFrame:
        from tsfm.data.forecast_frame import forecast_frame
        from tsfm.data.windows import inference_windows
        from tsfm.inference import (floor_at_zero, forecast_arrays, from_log_space, interpolate_levels,
                                    log_scale_channels, pin_constants, to_log_space)

        context = self.context_length or self.model_.config.context_length
        context = min(int(context), self.model_.config.context_length)
        windows = inference_windows(series, context)
        past_values, past_mask, freq_id = windows["past_values"], windows["past_mask"], windows["freq_id"]
        past_exog = None
        if self._uses_covariates():
            past_exog = self._past_covariates(windows)
            if future_exog is None:
                future_exog = self._future_covariates(series, h, X_future)
        logged = log_scale_channels(past_values, past_mask, self._log_scale_mode(), series.freq_info.season)
        model_values = to_log_space(past_values, past_mask, logged) if logged.any() else past_values
        raw = forecast_arrays(self.model_, model_values, past_mask, freq_id, h, self.batch_size, self.device_,
                              past_exog=past_exog, future_exog=future_exog)
        raw = from_log_space(raw, model_values, past_mask, logged)
        raw = floor_at_zero(pin_constants(raw, past_values, past_mask), past_values, past_mask, self.nonnegative)
        model_levels = list(self.model_.quantiles)
        levels = list(levels if levels is not None else self.levels_)
        names = list(names if names is not None else self.quantile_names_)
        quantiles = interpolate_levels(raw, model_levels, levels)
        median = interpolate_levels(raw, model_levels, [0.5])[..., 0]
        return forecast_frame(series, quantiles, levels, names, mean=median)

    def _past_covariates(self, windows: dict) -> np.ndarray:
        """``past_exog [N, L, E]`` for a covariate-aware model; InputError when the columns do not match."""
        expected = int(self.model_.config.num_exog_channels)
        got = windows.get("past_exog")
        width = 0 if got is None else got.shape[-1]
        if width != expected:
            saved = _checkpoint_roles(self.model)
            named = [*saved.get("past_exog", []), *saved.get("future_exog", [])]
            hint = f" ({', '.join(named)})" if named else ""
            raise InputError(
                f"this model was fine-tuned with {expected} covariate column(s){hint} but {width} were given; "
                "pass the same past_exog/future_exog columns (CLI: --exog/--future-exog)"
            )
        return got

    def _future_covariates(self, series, h: int, X_future: Any) -> np.ndarray | None:
        """``future_exog [N, h, Ep + Ef]`` (NaN for the past-only columns) or None when the model has no mixer."""
        from tsfm.data.windows import future_exog_windows

        n_future = len(series.future_exog_names)
        if not n_future or not getattr(self.model_.config, "enable_exog_mixer", False):
            return None
        if X_future is None:
            raise InputError(
                f"this model uses known-future covariates ({', '.join(series.future_exog_names)}): pass X_future "
                f"with their values for the next {h} steps of every series (CLI: --future FILE)"
            )
        known = future_exog_windows(series, X_future, h)  # [N, h, Ef], validated
        unknown = np.full(known.shape[:2] + (len(series.past_exog_names),), np.nan, dtype=np.float32)
        return np.concatenate([unknown, known], axis=-1)

    def _backtest_covariates(self, series, head, h: int) -> np.ndarray | None:
        """Known-future covariates after each backtest cutoff, read from the series' own columns."""
        if not self._uses_covariates() or series.future_exog is None:
            return None
        if not getattr(self.model_.config, "enable_exog_mixer", False):
            return None
        known = np.stack([f[len(v):len(v) + h] for f, v in zip(series.future_exog, head.values)]).astype(np.float32)
        unknown = np.full(known.shape[:2] + (len(series.past_exog_names),), np.nan, dtype=np.float32)
        return np.concatenate([unknown, known], axis=-1)

    def predict(
        self, df: pd.DataFrame | str | Path | None = None, h: int | None = None, X_future: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Forecast the fitted series (or ``df``'s own series): ``unique_id, ds, mean, <quantiles>``.

        ``X_future``: known-future covariates for the next ``h`` steps (models fine-tuned with
        ``future_exog``); for the fitted series it is remembered (plots use it).
        """
        self._check_fitted()
        if h is not None:
            _check_steps("h", h)
        if df is None and not hasattr(self, "series_"):
            raise NotFittedError("this Forecaster has a model but no fitted series (a save without them): "
                                 "call fit(df) first, or predict(df)")
        if not hasattr(self, "levels_"):
            levels, names = _quantile_names(self.quantiles)
            self._check_levels(levels)
            self.levels_, self.quantile_names_ = levels, names
        series = self.series_ if df is None else self._series(df)
        if not hasattr(self, "horizon_"):
            self.horizon_ = int(self.horizon) if self.horizon is not None else series.freq_info.horizon
        _check_future_fits(series, int(h) if h is not None else self.horizon_)
        if not self._uses_covariates():
            if X_future is not None:
                print("warning: this model was not trained with covariates; X_future is ignored "
                      "(fine-tune with covariates first)", file=sys.stderr)
            return self._forecast(series, int(h) if h is not None else self.horizon_)
        if df is None:
            X_future = X_future if X_future is not None else self.X_future_
            self.X_future_ = X_future
        return self._forecast(series, int(h) if h is not None else self.horizon_, X_future=X_future)

    def predict_band(self, h: int | None = None, max_series: int | None = None) -> pd.DataFrame:
        """Median and 80% band (levels 0.1/0.5/0.9) of the fitted series, whatever ``quantiles`` is."""
        self._check_fitted()
        series = self.series_
        if max_series is not None and len(series) > max_series:
            series = series.subset(list(range(max_series)))
        x_future = getattr(self, "X_future_", None)
        if x_future is not None and max_series is not None and len(self.series_) > max_series:
            from tsfm.data.windows import future_exog_windows

            full = future_exog_windows(self.series_, x_future, int(h or self.horizon_))[:max_series]
            unknown = np.full(full.shape[:2] + (len(series.past_exog_names),), np.nan, dtype=np.float32)
            return self._forecast(series, int(h or self.horizon_), (0.1, 0.5, 0.9), ("0.1", "0.5", "0.9"),
                                  future_exog=np.concatenate([unknown, full], axis=-1))
        return self._forecast(series, int(h or self.horizon_), (0.1, 0.5, 0.9), ("0.1", "0.5", "0.9"),
                              X_future=x_future)

    def cross_validation(
        self, df: pd.DataFrame | str | Path, h: int | None = None, n_windows: int = 1, step_size: int | None = None
    ) -> pd.DataFrame:
        """Rolling-origin backtest with Nixtla's columns: the forecasts plus ``cutoff`` and ``y``.

        Window k (oldest first) forecasts ``h`` points from everything before its cutoff.
        """
        from tsfm.data.backtest import backtest_windows
        if not self.__sklearn_is_fitted__():
            self.fit(df)
        series = self._series(df)
        h = int(h or self.horizon_)
        step = int(step_size or h)
        frames = []
        for head, tails in backtest_windows(series, h, n_windows, step):
            forecast = self._forecast(head, h, future_exog=self._backtest_covariates(series, head, h))
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
        report = getattr(self, "finetune_report_", None)
        card = None
        if report is not None:
            from tsfm.train.finetune import model_card

            card = model_card(report, str(self.model_name_))
        save_pretrained(self.model_, out, card=card)
        params = self.get_params()
        params["model"] = None  # the checkpoint is this directory
        params["log_scale"] = self._log_scale_mode()  # a suite's choice, which the bare checkpoint would not know
        quantiles = params["quantiles"]
        params["quantiles"] = (_quantile_names(quantiles)[1] if isinstance(quantiles, str)
                                else [quantiles] if isinstance(quantiles, (int, float)) else list(quantiles))
        (out / FORECASTER_FILE).write_text(json.dumps(params, indent=2, default=list) + "\n")
        if hasattr(self, "series_"):
            from tsfm.data.saved_series import save_series

            save_series(self.series_, out / CONTEXT_FILE)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "Forecaster":
        """A Forecaster on the checkpoint in ``directory``, fitted on the series it was saved with
        (``predict()`` works at once; ``fit(df)`` or ``predict(df)`` forecasts other data)."""
        path = Path(directory)
        params = {}
        if (path / FORECASTER_FILE).is_file():
            params = json.loads((path / FORECASTER_FILE).read_text())
        params["model"] = str(path)
        if isinstance(params.get("quantiles"), list):
            params["quantiles"] = tuple(params["quantiles"])
        forecaster = cls(**params)
        forecaster._load_model()
        if (path / CONTEXT_FILE).is_file():
            from tsfm.data.saved_series import load_saved_series

            levels, names = _quantile_names(forecaster.quantiles)
            forecaster._remember(load_saved_series(path / CONTEXT_FILE), levels, names)
        return forecaster

    def export_onnx(self, path: str | Path, quantize: str = "none", target: str = "x86", **options: Any) -> Path:
        """Export the model as one ``.onnx`` file (raw values in, quantiles out) for the edge runtime."""
        from tsfm.export.onnx_export import export_forecaster

        return export_forecaster(self, path, quantize=quantize, target=target, **options)

    def to_gluonts_predictor(self):
        """A GluonTS ``Predictor`` yielding ``QuantileForecast`` objects (for GluonTS backtesting)."""
        from tsfm.gluonts_predictor import TSFMPredictor

        self._check_fitted()
        return TSFMPredictor(self)
