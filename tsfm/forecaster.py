"""The scikit-learn-style ``Forecaster``: pandas in, pandas out, any registered model behind it.

Zero-shot ``fit`` validates the frame, regularises it onto its time grid and remembers each
series' context; ``predict`` runs the pretrained model. Constructor arguments are stored
unchanged (scikit-learn's ``clone`` relies on it); validation happens in ``fit``.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tsfm.errors import InputError
from tsfm.forecaster_inputs import (
    NotFittedError,
    check_count,
    check_future_fits,
    check_model_source,
    check_settings,
    check_steps,
    checkpoint_params,
    checkpoint_roles,
    column_names,
    covariate_roles,
    quantile_names,
    torch_device,
)
from tsfm_runtime.rules import MIN_OBSERVED

if TYPE_CHECKING:
    from tsfm.data.series_set import SeriesSet

class Forecaster:
    """Zero-shot (and fine-tunable) forecaster with scikit-learn conventions.

    >>> f = Forecaster(model="ttm", horizon=12).fit(df)   # doctest: +SKIP
    >>> f.predict()                                         # unique_id, ds, mean, "0.1", "0.5", "0.9"

    ``nonnegative``: None (default) floors at zero the forecasts of series whose context has no
    negative value (the network alone can dip below a hard zero floor); True floors every series,
    False none.

    ``log_scale``: which series are forecast in log space (their forecast taken back with exp):
    "seasonal" (strictly positive contexts of a seasonal frequency, spanning at most a factor of
    100: ``tsfm_runtime.rules.log_scale_channels``), "positive" (every such context) or "never".
    None (default) takes the model's choice (a suite's ``suite.json``; "never" for a single
    checkpoint, an ``.onnx`` file or a fine-tuned model).

    ``calibration_windows``: how many backtests of the horizon inside each series' own history
    calibrate the central intervals (conformal: widened or narrowed until they cover their nominal
    share there; ``tsfm_runtime.rules.backtest_widening``); 0 turns it off, None takes the model's
    choice as for ``log_scale``.

    ``seasonal_adjustment``: seasonal series shown to the network divided by their classical
    seasonal indices (``tsfm_runtime.rules.seasonal_factors``); None: the model's choice, as above.

    ``model="auto"``: a quantile ensemble of the ttm suite, moirai-moe and statsforecast's models,
    weighted per level on backtests of the fitted history (``tsfm.auto``; ``fit`` fits the weights,
    ``predict`` reuses them, ``save`` keeps them); its intervals are not calibrated unless
    ``calibration_windows`` > 0 (then conformal, leave-one-window-out over those backtests).
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
        calibration_windows: int | None = None,
        seasonal_adjustment: bool | None = None,
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
        self.calibration_windows = calibration_windows
        self.seasonal_adjustment = seasonal_adjustment
        self.device = device
        self.batch_size = batch_size
        self.num_threads = num_threads

    # ----------------------------------------------------------------- scikit-learn protocol
    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Forecaster:
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
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(defaults.get(k))]
        return f"Forecaster({', '.join(changed)})"

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                "This Forecaster instance is not fitted yet. "
                "Call 'fit' with appropriate arguments before using this estimator."
            )

    # ----------------------------------------------------------------- fitting
    def _check_source(self) -> None:
        """Fail on an unknown model or device before reading any data (one line naming the valid ones)."""
        torch_device(self.device)
        check_model_source(self.model)

    def _load_model(self, source: str | None = None) -> None:
        """Load ``source`` (default: ``model``; a suite's variant when ``fit`` chose one)."""
        from tsfm.pipeline import is_exported, load_network

        source = str(self.model) if source is None else source
        self.device_ = "cpu" if is_exported(source) else torch_device(self.device)
        self.model_ = load_network(source, device=self.device_, num_threads=self.num_threads)
        self.model_name_ = source
        for fitted in ("_finetuned_from", "finetune_report_"):  # fresh weights: no fine-tune to keep or describe
            self.__dict__.pop(fitted, None)

    def _series(self, df: pd.DataFrame | str | Path | SeriesSet, fill: str | None = None) -> SeriesSet:
        from tsfm.data.loading import load_series
        from tsfm.data.series_set import SeriesSet

        if isinstance(df, SeriesSet):  # loaded already (the GluonTS predictor's entries)
            return df

        past, future = covariate_roles(self.model, self.past_exog, self.future_exog)
        return load_series(df, id_col=self.id_col, time_col=self.time_col, target=self._setting("target"),
                           past_exog=past or None, future_exog=future or None, freq=self.freq,
                           multivariate=self.multivariate, fill=fill or self.fill,
                           min_length=MIN_OBSERVED)

    def _with_fitted_resolution(self, series):
        """New integer steps keep the resolution read from the fitted ones: the plan was made for it."""
        fitted = getattr(self, "series_", None)
        if fitted is not None and fitted.inferred and series.inferred:
            return dataclasses.replace(series, inferred=fitted.inferred)
        return series

    def _setting(self, name: str) -> Any:
        """A parameter as given, else (when None) the one a checkpoint folder was saved with: the
        network was tuned to read that context, in that value space, with those intervals, and
        several targets as its channels (a single target's column name is the data's business)."""
        value = getattr(self, name)
        if value is not None:
            return value
        saved = checkpoint_params(self.model).get(name)
        return None if name == "target" and len(column_names(saved)) < 2 else saved

    def _plan_settings(self) -> dict[str, Any]:
        names = ("context_length", "log_scale", "calibration_windows", "seasonal_adjustment")
        return {name: self._setting(name) for name in names}

    def _plan(self, series) -> None:
        """Decide what serves these series (``plan_``) and load it; a fine-tuned model is kept."""
        from tsfm.pipeline import plan

        finetuned = getattr(self, "_finetuned_from", None) == self.model and hasattr(self, "model_")
        self.plan_ = plan(self.model, series, finetuned=finetuned, **self._plan_settings())
        self.history_length_ = self.plan_.history
        if not finetuned and (not hasattr(self, "model_") or getattr(self, "model_name_", None) != self.plan_.source):
            self._load_model(self.plan_.source)

    def fit(self, df: pd.DataFrame | pd.Series | np.ndarray | str | Path, y: Any = None) -> Forecaster:
        """Validate ``df`` (a long or wide table, a Series, a 1-D array of values or a list of them),
        load the model and remember each series' context."""
        levels, names = quantile_names(self.quantiles)
        check_settings(self.get_params())
        from tsfm.pipeline import check_levels

        self._check_source()
        series = self._series(df)
        check_future_fits(series, self._default_horizon(series))
        if self.model == "auto":
            self.model_ = self._fit_auto(series)
        else:
            self._plan(series)
        check_levels(self.model_, levels)
        self._remember(series, levels, names)
        return self

    def _default_horizon(self, series) -> int:
        from tsfm.pipeline import default_horizon
        horizon = self._setting("horizon")  # not given: a saved (fine-tuned) folder's
        return int(horizon) if horizon is not None else default_horizon(self.model, series)

    def _is_auto(self) -> bool:
        return getattr(self, "model_name_", None) == "auto"

    def _serves_elsewhere(self, series: SeriesSet) -> bool:
        """Whether ``series`` is at another frequency than the fitted data, so that what ``fit`` would
        choose for it serves it (a fine-tune or "auto" serves whatever it is given)."""
        from tsfm.data.freq import same_freq

        fitted = getattr(self, "freq_", None)
        return fitted is not None and not same_freq(series.freq, fitted) and not self._is_auto() \
            and getattr(self, "_finetuned_from", None) != self.model

    def _fit_auto(self, series, h: int | None = None):
        """The ``model="auto"`` ensemble fitted on ``series`` (``tsfm.auto.fit``), with its plan."""
        from tsfm import auto
        from tsfm.pipeline import Plan, inferred_note, typical_history

        h = h or self._default_horizon(series)
        self.device_ = torch_device(self.device)
        calibrate = auto.CALIBRATE if self.calibration_windows is None else self.calibration_windows > 0
        ensemble = auto.fit(series, h, context_length=self.context_length, log_scale=self.log_scale,
                            seasonal_adjustment=self.seasonal_adjustment, calibrate=calibrate, device=self.device_,
                            batch_size=self.batch_size, n_jobs=self.num_threads, num_threads=self.num_threads)
        self.model_name_ = auto.AUTO
        lines = [inferred_note(series), *ensemble.lines]  # how integer steps were read, as plan() says
        self.plan_ = Plan(auto.AUTO, "never", typical_history(series), "\n".join(line for line in lines if line))
        self.history_length_ = self.plan_.history
        return ensemble

    def _remember(self, series, levels: list[float], names: list[str]) -> None:
        """The fitted attributes: the series' context, frequency, horizon and quantile columns."""
        self.series_ = series
        self.freq_ = series.freq
        self.horizon_ = self._default_horizon(series)
        self.levels_, self.quantile_names_ = levels, names
        self.series_ids_ = list(series.ids)
        self.X_future_ = None

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
    ) -> Forecaster:
        """Few-shot fine-tuning on ``df`` (Lightning), then ready to ``predict`` its series; returns self.

        Starts from the weights ``model`` names, trains on the last ``fraction`` of each series'
        windows with the last ``val_size`` points held out, stops early on the validation loss and
        keeps the best epoch, or the zero-shot weights when no epoch beat them
        (``finetune_report_.kept``). ``mode``: "head" (TTM: backbone frozen, decoder + head
        trained), "decoder" or "full". Named ``past_exog`` / ``future_exog`` columns turn a
        univariate model into a covariate-aware one. ``X_future`` (known-future covariates for
        the next ``horizon`` steps) is checked now and used by ``predict()``.
        """
        from tsfm.data.windows import future_exog_windows
        from tsfm.pipeline import future_covariates, model_context, plan
        from tsfm.train.finetune import finetune_model

        if self.model == "auto":
            raise InputError("model='auto' is an ensemble of pretrained and statistical models: fine-tune one model")
        if str(self.model).lower().endswith(".onnx"):
            raise InputError(f"{self.model} is an exported graph, which holds no trainable weights: fine-tune the "
                             "checkpoint it was exported from")
        self.__dict__.pop("model_", None)  # always from the named weights, never on top of an earlier fine-tune
        self.fit(df)
        if X_future is not None:  # checked before the training, not after it
            if not self.series_.future_exog_names:
                raise InputError("X_future holds known-future covariates, but no future_exog columns are named: "
                                 "name them (future_exog=[...]; CLI: --future-exog)")
            future_exog_windows(self.series_, X_future, self.horizon_)
        context = model_context(self.model_, self._setting("context_length"))
        self.model_, self.finetune_report_ = finetune_model(
            self.model_, self.series_, self.horizon_, context_length=context, fraction=fraction, mode=mode,
            max_epochs=max_epochs, max_steps=max_steps, val_size=val_size, learning_rate=learning_rate,
            batch_size=batch_size, patience=patience, progress=progress, device=self.device_,
        )
        self._finetuned_from = self.model
        self.plan_ = plan(self.model, self.series_, finetuned=self.finetune_report_.kept != "zero-shot",
                          **self._plan_settings())  # tuned on raw values, uncalibrated
        if progress:
            print(self.finetune_report_.summary(), file=sys.stderr)
        if X_future is not None:
            future_covariates(self.model_, self.series_, self.horizon_, X_future)  # fail now, not at predict
            self.X_future_ = X_future
        return self

    # ----------------------------------------------------------------- predicting
    def forecast_options(self) -> dict[str, Any]:
        """How the fitted Forecaster runs ``tsfm.pipeline.forecast``: its plan's value space and its settings."""
        self._check_fitted()
        saved = checkpoint_roles(self.model)
        return {"log_scale": self.plan_.log_scale, "calibration_windows": self.plan_.calibration_windows,
                "seasonal_adjustment": self.plan_.seasonal_adjustment, "nonnegative": self.nonnegative,
                "context_length": self._setting("context_length"), "batch_size": self.batch_size,
                "device": self.device_,
                "trained_with": [*saved.get("past_exog", []), *saved.get("future_exog", [])]}

    def predict(
        self, df: pd.DataFrame | str | Path | None = None, h: int | None = None, X_future: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Forecast the fitted series (or ``df``'s own series): ``unique_id, ds, mean, <quantiles>``.

        ``df`` at another frequency than the fitted data is served (model, default horizon) as
        ``fit(df)`` would serve it, unless the model was fine-tuned or is "auto".

        ``X_future``: known-future covariates for the next ``h`` steps (models fine-tuned with
        ``future_exog``); for the fitted series it is remembered (plots use it). Afterwards
        ``notes_`` holds one line per member of ``model="auto"`` that failed on some series.
        """
        from tsfm.pipeline import reads_covariates

        self._check_fitted()
        if h is not None:
            check_steps("h", h)
        if df is None and not hasattr(self, "series_"):
            raise NotFittedError("this Forecaster has a model but no fitted series (a save without them): "
                                 "call fit(df) first, or predict(df)")
        series = self.series_ if df is None else self._with_fitted_resolution(self._series(df))
        if df is not None and self._serves_elsewhere(series):
            return self._fitted_on(series).predict(h=h, X_future=X_future)  # its frequency's horizon, too
        if not hasattr(self, "horizon_"):
            self.horizon_ = self._default_horizon(series)
        h = int(h) if h is not None else self.horizon_
        if df is None and not self._is_auto() and reads_covariates(self.model_):
            X_future = X_future if X_future is not None else self.X_future_
            self.X_future_ = X_future
        from tsfm.data.forecast_frame import ids_as_given
        return ids_as_given(self.forecast_series(series, h, X_future), series)

    def forecast_series(self, series: SeriesSet, h: int, X_future: pd.DataFrame | None = None) -> pd.DataFrame:
        """The forecast frame of a loaded ``SeriesSet`` by the fitted model and plan (at another frequency, by
        what ``fit`` would choose for it): what ``predict`` returns for a frame, and the GluonTS predictor
        for its entries."""
        from tsfm.pipeline import check_contexts, check_levels, forecast_frame, reads_covariates

        if not hasattr(self, "levels_"):  # a Forecaster loaded without its series
            levels, names = quantile_names(self.quantiles)
            check_levels(self.model_, levels)
            self.levels_, self.quantile_names_ = levels, names
        if not hasattr(self, "plan_"):
            self._plan(series)
        if self._serves_elsewhere(series):
            return self._fitted_on(series).forecast_series(series, h, X_future)
        check_future_fits(series, h)
        self.notes_: list[str] = []  # one line per "auto" member that failed on some series
        if self._is_auto():
            frame = self.model_.forecast_frame(series, h, self.levels_, self.quantile_names_, self.nonnegative)
            self.notes_ = list(self.model_.notes)
            return frame
        if not reads_covariates(self.model_):
            if X_future is not None:
                print("warning: this model was not trained with covariates; X_future is ignored "
                      "(fine-tune with covariates first)", file=sys.stderr)
            X_future = None
        elif self.plan_.calibration_windows or self.plan_.log_scale != "never" or self.plan_.seasonal_adjustment:
            print("warning: a model that reads covariates forecasts without interval calibration, log space or "
                  "seasonal adjustment; those settings are ignored", file=sys.stderr)
        check_contexts(self.model_, series, self._setting("context_length"))
        return forecast_frame(self.model_, series, h, self.levels_, self.quantile_names_, x_future=X_future,
                              **self.forecast_options())

    def predict_band(self, h: int | None = None, max_series: int | None = None) -> pd.DataFrame:
        """Median and 80% band (levels 0.1/0.5/0.9) of the fitted series, whatever ``quantiles`` is."""
        from tsfm.pipeline import forecast_frame, future_covariates

        self._check_fitted()
        h = int(h or self.horizon_)
        series, future_exog = self.series_, None
        x_future = getattr(self, "X_future_", None)
        if max_series is not None and len(series) > max_series:
            series = series.subset(list(range(max_series)))
        if self._is_auto():
            return self.model_.forecast_frame(series, h, (0.1, 0.5, 0.9), ("0.1", "0.5", "0.9"), self.nonnegative)
        if x_future is not None:  # built for every fitted series, then cut to those drawn
            full = future_covariates(self.model_, self.series_, h, x_future)
            future_exog = None if full is None else full[:max_series]
        return forecast_frame(self.model_, series, h, (0.1, 0.5, 0.9), ("0.1", "0.5", "0.9"), x_future=x_future,
                              future_exog=future_exog, **self.forecast_options())

    def cross_validation(
        self, df: pd.DataFrame | str | Path, h: int | None = None, n_windows: int = 1, step_size: int | None = None
    ) -> pd.DataFrame:
        """Rolling-origin backtest with Nixtla's columns: the forecasts plus ``cutoff`` and ``y``.

        Window k (oldest first) forecasts ``h`` points from everything before its cutoff (cutoffs
        ``step_size`` apart; default ``h``, windows that do not overlap, where statsforecast's is 1), by the
        model ``fit(df)`` chooses for ``df`` (as statsforecast fits the frame it is given; a
        fine-tuned model is kept). A series with no observed value in the context the model would
        read before a cutoff is left out of that window (``cv_skipped_`` counts those series x window
        pairs; a multivariate item, whose channels are read together, is left out whole). A window's
        series are forecast together, so its pooled calibration reads their histories up to their own cutoffs.
        """
        from tsfm.data.backtest import observed_windows
        from tsfm.pipeline import backtest_covariates, forecast_frame, model_context

        for name, value in (("h", h), ("step_size", step_size)):
            if value is not None:
                check_steps(name, value)
        check_count("n_windows", n_windows)
        runner = self._fitted_on(df)
        series = runner._with_fitted_resolution(runner._series(df, fill="mask"))  # each window fills its own past
        h = int(h) if h is not None else runner.horizon_
        step = int(step_size) if step_size is not None else h
        frames, self.cv_skipped_ = [], 0
        context = None if runner._is_auto() else model_context(runner.model_, runner._setting("context_length"))
        for head, whole, tails, left_out in observed_windows(series, h, n_windows, step, context, runner.fill):
            self.cv_skipped_ += left_out
            if not len(head):
                continue
            if runner._is_auto():  # weights and calibration fitted on each window's own past, by a copy
                window_fit = type(runner)(**runner.get_params())._fit_auto(head, h)
                forecast = window_fit.forecast_frame(head, h, runner.levels_, runner.quantile_names_,
                                                     runner.nonnegative)
            else:
                forecast = forecast_frame(runner.model_, head, h, runner.levels_, runner.quantile_names_,
                                          future_exog=backtest_covariates(runner.model_, whole, head, h),
                                          **runner.forecast_options())
            cutoffs = pd.Series([head.last_timestamp(i) for i in range(len(head))], index=head.ids)
            forecast.insert(2, "cutoff", forecast["unique_id"].map(cutoffs) if not head.ids_as_channels
                            else head.last_timestamp(0))
            forecast["y"] = np.concatenate([np.asarray(tail)[:h].T.ravel() for tail in tails])
            frames.append(forecast)
        if not frames:
            raise InputError(f"no backtest window has a series with an observed value in the history before its "
                             f"cutoff (h={h}, n_windows={n_windows}): nothing to forecast from")
        from tsfm.data.forecast_frame import ids_as_given
        return ids_as_given(pd.concat(frames, ignore_index=True), series)

    def _fitted_on(self, df: pd.DataFrame | str | Path | SeriesSet) -> Forecaster:
        """Who forecasts ``df`` in a backtest or at another frequency: this Forecaster once fitted on it
        (when not fitted yet), fine-tuned or "auto", else a copy fitted on ``df`` that reuses the
        loaded network where it serves."""
        if not self.__sklearn_is_fitted__():
            return self.fit(df)
        if self._is_auto() or getattr(self, "_finetuned_from", None) == self.model:
            return self  # "auto" fits every window's ensemble afresh; a fine-tune is what is backtested
        runner = type(self)(**self.get_params())
        runner.model_, runner.model_name_, runner.device_ = self.model_, self.model_name_, self.device_
        return runner.fit(df)

    def evaluate(self, df: pd.DataFrame | str | Path, h: int | None = None, n_windows: int = 1, m: int | None = None,
                 step_size: int | None = None) -> dict[str, float]:
        """MASE, sMAPE (0-200), WQL and 10-90% coverage of ``cross_validation``'s backtest.

        ``m`` is the seasonal period of the MASE scale (default: the frequency's; 1 for integer steps
        without ``freq``), returned as ``season``. Series left out of a window (no observed history
        before its cutoff) are counted in ``n_series_windows_skipped``.
        """
        from tsfm.evaluation import check_point_level, evaluate_forecasts

        levels, names = quantile_names(self.quantiles)
        check_point_level(levels)
        if m is not None:
            check_count("the seasonal period m", m)
        series = self._series(df, fill="mask")  # the scale of MASE from observed values only
        if series.n_channels > 1:
            raise InputError(f"evaluate scores one target per series, and these have {series.n_channels} channels "
                             "(several targets, or series gathered as channels): evaluate each target alone, or "
                             "score cross_validation's frame yourself")
        cv = self.cross_validation(df, h=h, n_windows=n_windows, step_size=step_size)
        keys = ["unique_id", "ds", "cutoff"]
        forecast = cv.drop(columns=["y", "mean"]).rename(columns=dict(zip(names, map(str, levels))))
        season = int(series.stated_freq_info.season if m is None else m)
        scores = evaluate_forecasts(forecast, cv[keys + ["y"]], series.to_frame(), season, levels)
        return {**scores, "season": float(season), "n_series_windows_skipped": float(self.cv_skipped_)}

    # ----------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Model checkpoint + the Forecaster's parameters, so ``Forecaster.load`` rebuilds it."""
        from tsfm.forecaster_saving import write_folder
        from tsfm.pipeline import reads_covariates

        self._check_fitted()
        params = self.get_params()
        if not self._is_auto():  # the checkpoint is the folder; the plan's choices and the settings it was read with
            params.update(model=None, log_scale=self.plan_.log_scale,
                          calibration_windows=self.plan_.calibration_windows,
                          seasonal_adjustment=self.plan_.seasonal_adjustment,
                          context_length=self._setting("context_length"), target=self._setting("target"))
            roles = covariate_roles(self.model, self.past_exog, self.future_exog) if reads_covariates(self.model_) \
                else ([], [])  # zero-shot weights kept: the saved network reads none
            params["past_exog"], params["future_exog"] = (names or None for names in roles)
        return write_folder(directory, self.model_, params, getattr(self, "series_", None),
                            getattr(self, "finetune_report_", None), str(self.model_name_))

    @classmethod
    def load(cls, directory: str | Path) -> Forecaster:
        """A Forecaster on the checkpoint in ``directory``, fitted on the series it was saved with
        (``predict()`` works at once; ``fit(df)`` or ``predict(df)`` forecasts other data)."""
        from tsfm.forecaster_saving import load_auto, read_folder

        params, series = read_folder(directory)
        forecaster = cls(**params)
        if forecaster.model == "auto":
            forecaster.device_ = torch_device(forecaster.device)
            forecaster.model_, forecaster.plan_ = load_auto(
                directory, context_length=forecaster.context_length, device=forecaster.device_,
                batch_size=forecaster.batch_size, num_threads=forecaster.num_threads)
            forecaster.model_name_ = "auto"
        else:
            forecaster._load_model()
        if series is not None:
            forecaster._remember(series, *quantile_names(forecaster.quantiles))
        return forecaster

    def export_onnx(self, path: str | Path, quantize: str = "none", target: str = "x86", **options: Any) -> Path:
        """Export the model as one ``.onnx`` file (raw values in, quantiles out) for the edge runtime."""
        from tsfm.export.onnx_export import export_forecaster

        if self.model == "auto":
            raise InputError("model='auto' has no single network to export: export its members (tsfm export) and "
                             "combine their quantiles with tsfm_runtime.aggregate.combine_saved and auto.json")
        return export_forecaster(self, path, quantize=quantize, target=target, **options)

    def to_gluonts_predictor(self):
        """A GluonTS ``Predictor`` yielding ``QuantileForecast`` objects (for GluonTS backtesting)."""
        from tsfm.gluonts_predictor import TSFMPredictor

        self._check_fitted()
        return TSFMPredictor(self)
