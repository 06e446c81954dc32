"""The forecast path every interface shares: decide once, then windows -> network -> rules -> frame.

``plan`` decides, once per dataset, which checkpoint serves it (a suite's variant for the data's
resolution and typical history length, or the model named), in which value space, and says why
in one line. ``forecast`` then cuts the context windows, runs the network (torch checkpoint or
exported file) through the shared numpy rules of ``tsfm_runtime.rules`` (value space, rollout,
constants, floor at zero) and interpolates the levels asked for; ``forecast_frame`` writes them
as a frame. The Forecaster, the CLI, the GluonTS predictor, evaluation and export all go through
here, and the edge runtime applies the same rules and the same suite choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from tsfm.data.forecast_frame import forecast_frame as make_frame
from tsfm.data.series_set import SeriesSet
from tsfm.data.windows import blind_contexts, future_exog_windows, inference_windows
from tsfm.errors import InputError
from tsfm.hub import exported_lengths, load_model, load_suite
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm_runtime import rules
from tsfm_runtime.freq import NON_SEASONAL

ONNX_SUFFIX = ".onnx"


@dataclass(frozen=True)
class Plan:
    """What serves a dataset, decided once: the checkpoint to load, the value-space rule, and why."""

    source: str  # a shipped name, a checkpoint folder or an exported .onnx file
    log_scale: str  # "seasonal", "positive" or "never" (``tsfm_runtime.rules.log_scale_channels``)
    history: float  # the typical (median) observed length of the series, capped at the context asked for
    reason: str = ""  # one line for the user: why a suite chose the checkpoint, how integer steps were read
    calibration_windows: int = 0  # backtests inside each history that calibrate the intervals
    seasonal_adjustment: bool = False  # seasonal series shown to the network after classical decomposition


def typical_history(series: SeriesSet) -> float:
    """Median number of steps at which a series has any observed value."""
    return float(np.median([np.isfinite(v).any(axis=1).sum() for v in series.values]))


def is_exported(source: str | Path) -> bool:
    return str(source).lower().endswith(ONNX_SUFFIX)


def default_horizon(model: str | Path, series: SeriesSet) -> int:
    """Steps forecast when none are asked for: an exported file's horizon when its export named one,
    else the frequency's."""
    if is_exported(model) and Path(model).is_file():
        from tsfm_runtime.edge import ModelFileError

        try:
            recorded = exported_lengths(str(model), Path(model).stat().st_mtime_ns)[1]
        except ModelFileError as err:
            raise InputError(str(err)) from None
        if recorded is not None:
            return recorded
    return series.stated_freq_info.horizon


def plan(model: str | Path, series: SeriesSet, *, context_length: int | None = None,
         log_scale: str | None = None, calibration_windows: int | None = None,
         seasonal_adjustment: bool | None = None, finetuned: bool = False) -> Plan:
    """The plan for ``series`` under the model named ``model`` (a suite, checkpoint or .onnx file).

    ``log_scale``: the user's choice, else "never" for a fine-tuned model (trained on raw values),
    else the suite's rule, else "never"; ``calibration_windows`` (0 when not a suite) and
    ``seasonal_adjustment`` (False when not a suite) likewise. A fine-tuned model keeps the
    checkpoint it started from.
    """
    if log_scale is not None and log_scale not in rules.LOG_SCALE_MODES:
        raise InputError(f"log_scale must be None (the model's choice) or one of {', '.join(rules.LOG_SCALE_MODES)}, "
                         f"got {log_scale!r}")
    if calibration_windows is not None and (not isinstance(calibration_windows, (int, np.integer))
                                            or isinstance(calibration_windows, bool) or calibration_windows < 0):
        raise InputError(f"calibration_windows must be None (the model's choice) or an integer >= 0, "
                         f"got {calibration_windows!r}")
    if seasonal_adjustment not in (None, True, False):
        raise InputError(f"seasonal_adjustment must be None (the model's choice), True or False, "
                         f"got {seasonal_adjustment!r}")
    history = min(typical_history(series), context_length or np.inf)
    suite = None if is_exported(model) else load_suite(model)
    mode = log_scale or ("never" if finetuned or suite is None else suite.log_scale)
    windows = calibration_windows if calibration_windows is not None else (
        0 if finetuned or suite is None else suite.spec.calibration_windows)
    adjust = bool(seasonal_adjustment if seasonal_adjustment is not None else (
        not finetuned and suite is not None and suite.spec.seasonal_adjustment))
    if suite is None:
        return Plan(str(model), mode, history, inferred_note(series), int(windows), adjust)
    info = series.freq_info
    chosen = suite.select(history, info.season, info.name)
    log_note = (f"; positive contexts in log space, --log-scale {mode}"
                if rules.log_scale_applies(mode, info.season) else "")
    if adjust and info.season > 1:
        log_note += ("; seasonal adjustment where a positive context has a clear season, "
                     "--no-seasonal-adjustment turns it off")
    special = f", {info.name} data" if suite.spec.is_specialist(suite.variant_of(chosen), info.name) else ""
    special = f", {inferred_note(series)}" if series.inferred else special  # what the resolution rests on
    reason = f"model {chosen} (from suite {model}: median history {history:g} points{special}{log_note})"
    return Plan(chosen, mode, history, reason, int(windows), adjust)


def inferred_note(series: SeriesSet) -> str:
    """How integer steps without a frequency were read ("" for other data)."""
    if not series.inferred:
        return ""
    read = (f"integer steps read as {series.inferred} from their seasons" if series.inferred != NON_SEASONAL
            else "integer steps with no season, read as yearly")
    return f"{read} (--freq or freq= says what a step is)"


# ----------------------------------------------------------------------------- networks
@dataclass
class ExportedConfig(ModelConfig):
    """What the package reads from an exported file's metadata (not a trainable family)."""

    family: ClassVar[str] = "onnx"
    path: str = ""
    source_family: str = ""

    def to_json(self, path: str | Path) -> None:
        raise InputError("an exported .onnx model is not a checkpoint and cannot be saved as one: copy the .onnx file")

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(exportable=False)


class ExportedNetwork(ForecastModel):
    """An exported file behind the ``ForecastModel`` interface (onnxruntime on the CPU), so that the
    Forecaster serves it like a checkpoint; ``forecast`` calls its graph directly."""

    config_class: ClassVar[type[ModelConfig]] = ExportedConfig

    def __init__(self, edge: Any) -> None:
        super().__init__(ExportedConfig(context_length=edge.context_length, prediction_length=edge.horizon,
                                        quantiles=edge.quantiles, path=edge.path, source_family=edge.family))
        self.edge = edge

    def forward(self, past_values: torch.Tensor, past_mask: torch.Tensor | None = None,
                freq_id: torch.Tensor | None = None, past_exog: torch.Tensor | None = None,
                future_exog: torch.Tensor | None = None) -> torch.Tensor:
        values = past_values.detach().cpu().float().numpy()
        mask = np.ones_like(values) if past_mask is None else past_mask.detach().cpu().float().numpy()
        ids = np.zeros(len(values), np.int64) if freq_id is None else freq_id.detach().cpu().numpy().astype(np.int64)
        ids = np.broadcast_to(ids.reshape(-1), (len(values),)) if ids.size == 1 else ids.reshape(-1)
        exog = [None if x is None else x.detach().cpu().numpy() for x in (past_exog, future_exog)]
        return torch.from_numpy(self.step(values, mask, ids, *exog)).to(past_values.device)

    def step(self, values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray,
             past_exog: np.ndarray | None = None, future_exog: np.ndarray | None = None) -> np.ndarray:
        if past_exog is not None or future_exog is not None:
            raise InputError("an exported .onnx model takes no covariates: forecast with the checkpoint directory")
        return self.edge.forecast_step(values, mask, freq_id)


def load_network(source: str | Path, device: str = "cpu", num_threads: int | None = None) -> ForecastModel:
    """The network ``source`` names: a shipped name or checkpoint folder (torch, on ``device``), or an
    exported ``.onnx`` file (onnxruntime, CPU). InputError with one line when it cannot serve."""
    if num_threads:
        torch.set_num_threads(int(num_threads))
    if not is_exported(source):
        return load_model(source, device=device)
    from tsfm_runtime.edge import ModelFileError
    from tsfm_runtime.edge import load as load_exported

    try:
        return ExportedNetwork(load_exported(source, num_threads=num_threads))
    except ModelFileError as err:
        raise InputError(str(err)) from None


def torch_step(model: ForecastModel, batch_size: int, device: str | torch.device) -> rules.StepFn:
    """One call of a torch network over all windows, in batches of ``batch_size``."""
    device = torch.device(device)
    model = model.to(device).eval()

    def step(values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray,
             past_exog: np.ndarray | None = None, future_exog: np.ndarray | None = None) -> np.ndarray:
        arrays = [np.ascontiguousarray(values, dtype=np.float32), np.ascontiguousarray(mask, dtype=np.float32),
                  np.ascontiguousarray(freq_id, dtype=np.int64), past_exog, future_exog]
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(values), batch_size):
                stop = start + batch_size
                batch = [None if a is None else torch.from_numpy(a[start:stop]).to(device) for a in arrays]
                outputs.append(model(*batch).float().cpu().numpy())
        return np.concatenate(outputs, axis=0)

    return step


# ----------------------------------------------------------------------------- covariates
def reads_covariates(model: ForecastModel) -> bool:
    return bool(model.capabilities.covariate_channels)


def reads_future_covariates(model: ForecastModel) -> bool:
    return reads_covariates(model) and model.capabilities.future_covariates


def past_covariates(model: ForecastModel, windows: dict, trained_with: Sequence[str] = ()) -> np.ndarray:
    """``past_exog [N, L, E]`` for a covariate-aware model; InputError when the columns do not match."""
    expected = model.capabilities.covariate_channels
    got = windows.get("past_exog")
    width = 0 if got is None else got.shape[-1]
    if width != expected:
        hint = f" ({', '.join(trained_with)})" if trained_with else ""
        raise InputError(
            f"this model was fine-tuned with {expected} covariate column(s){hint} but {width} were given; "
            "pass the same past_exog/future_exog columns (CLI: --exog/--future-exog)"
        )
    return got


def _with_unknown_past(series: SeriesSet, known: np.ndarray) -> np.ndarray:
    """Known-future covariates [N, h, Ef] preceded by NaN for the past-only columns (unknown ahead)."""
    unknown = np.full(known.shape[:2] + (len(series.past_exog_names),), np.nan, dtype=np.float32)
    return np.concatenate([unknown, known], axis=-1)


def future_covariates(model: ForecastModel, series: SeriesSet, h: int, x_future: Any) -> np.ndarray | None:
    """``future_exog [N, h, Ep + Ef]`` from a frame of the next ``h`` steps, or None when the model reads none."""
    if not series.future_exog_names or not reads_future_covariates(model):
        return None
    if x_future is None:
        raise InputError(
            f"this model uses known-future covariates ({', '.join(series.future_exog_names)}): pass X_future "
            f"with their values for the next {h} steps of every series (CLI: --future FILE)"
        )
    return _with_unknown_past(series, future_exog_windows(series, x_future, h))


def backtest_covariates(model: ForecastModel, series: SeriesSet, head: SeriesSet, h: int) -> np.ndarray | None:
    """Known-future covariates after each backtest cutoff, read from the series' own columns."""
    if series.future_exog is None or not reads_future_covariates(model):
        return None
    known = np.stack([f[len(v):len(v) + h] for f, v in zip(series.future_exog, head.values)]).astype(np.float32)
    return _with_unknown_past(series, known)


# ----------------------------------------------------------------------------- forecasting
def forecast(
    model: ForecastModel,
    series: SeriesSet,
    h: int,
    levels: Sequence[float],
    *,
    log_scale: str = "never",
    nonnegative: bool | None = None,
    calibration_windows: int = 0,
    seasonal_adjustment: bool = False,
    context_length: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    x_future: Any = None,
    future_exog: np.ndarray | None = None,
    trained_with: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles ``[N, h, C, len(levels)]`` and medians ``[N, h, C]`` of every series.

    Covariate-aware models read the series' covariate columns and, for known-future ones,
    ``x_future`` (a frame of the next ``h`` steps) or ready ``future_exog`` windows. With
    ``calibration_windows``, that many backtests of ``h`` steps inside each series calibrate the
    intervals (``tsfm_runtime.rules.backtest_widening``); with ``seasonal_adjustment``, seasonal
    series are shown to the network after classical decomposition
    (``tsfm_runtime.rules.seasonal_factors``). Both for models without covariates.
    """
    check_levels(model, levels)
    context = model_context(model, context_length)
    if reads_covariates(model):
        calibration_windows = 0
    longest = max((len(v) for v in series.values), default=0)  # backtests need no padding beyond the longest history
    windows = inference_windows(series, max(context, min(context + calibration_windows * h, longest)))
    values, mask, freq_id = windows["past_values"], windows["past_mask"], windows["freq_id"]
    past_exog = None
    if reads_covariates(model):
        past_exog = past_covariates(model, windows, trained_with)
        if future_exog is None:
            future_exog = future_covariates(model, series, h, x_future)
        log_scale = "never"  # covariates are read on the values' own scale
    elif future_exog is not None:
        raise InputError("future covariates need a model fine-tuned with covariates")
    step = model.step if isinstance(model, ExportedNetwork) else torch_step(model, batch_size, device)
    raw = rules.forecast(step, values, mask, freq_id, h, model.quantiles, model.config.prediction_length,
                         context=context, log_scale=log_scale, season=series.freq_info.season,
                         nonnegative=nonnegative, calibration_windows=calibration_windows,
                         seasonal_adjustment=seasonal_adjustment, past_exog=past_exog, future_exog=future_exog)
    quantiles = rules.interpolate_levels(raw, model.quantiles, levels)
    median = rules.interpolate_levels(raw, model.quantiles, [0.5])[..., 0]
    return quantiles, median


def model_context(model: ForecastModel, context_length: int | None = None) -> int:
    """The steps of history the network reads: its own context, or fewer when the user asked for fewer."""
    return min(int(context_length or model.config.context_length), model.config.context_length)


def check_contexts(model: ForecastModel, series: SeriesSet, context_length: int | None = None) -> None:
    """InputError for a series (or channel) with no observed value in the last context the model reads:
    the network would see only padding and forecast about zero. For the forecast a user asked for;
    backtests leave such a series out of the window instead."""
    context = model_context(model, context_length)
    blind = blind_contexts(series, context)
    if not blind.size:
        return
    i, c = (int(x) for x in blind[0])
    if series.n_channels > 1:
        raise InputError(f"channel '{series.target_names[c]}' of series '{series.ids[i]}' has no observed value in "
                         f"its last {context} steps, all the model reads: give it values there or leave it out")
    raise InputError(f"series '{series.ids[i]}' has no observed value in its last {context} steps, all the model "
                     "reads: drop its trailing empty rows so that its forecast starts where its values end")


def forecast_frame(model: ForecastModel, series: SeriesSet, h: int, levels: Sequence[float],
                   names: Sequence[str], **options: Any) -> pd.DataFrame:
    """``forecast`` as a frame: ``unique_id, ds, mean, <names>`` (``mean`` is the median)."""
    quantiles, median = forecast(model, series, h, levels, **options)
    return make_frame(series, quantiles, list(levels), list(names), mean=median)


def check_levels(model: ForecastModel, levels: Sequence[float]) -> None:
    """Levels outside the model's quantile range fail before the model runs (no extrapolation)."""
    try:
        rules.check_levels(model.quantiles, levels)
    except ValueError as err:
        raise InputError(str(err)) from None
