"""Backtesting and forecast metrics on long DataFrames (``unique_id, ds, y``).

The split and the metrics follow the eval set's README (and so the held-out harness):

- the last ``n_windows * h`` points of every series are test, scored as ``n_windows`` consecutive
  windows of ``h`` points; window ``k`` (0 = earliest) sees every point before its start (points
  of the series' grid, split by ``tsfm.data.backtest.backtest_windows`` as in the Forecaster);
- MASE on the median, scaled by the seasonal naive error of everything before the window
  (period ``m``; ``m`` longer than that past -> 1), averaged over series x windows;
- sMAPE on the median, 0-200 scale, averaged over series x windows;
- WQL = mean over quantile levels q of ``sum 2|(y - yhat_q)(1{y <= yhat_q} - q)| / sum |y|``,
  the sums running over the whole task (ratio of sums, GluonTS' ``MeanWeightedSumQuantileLoss``);
- coverage of the 10-90% band: the share of actual points inside ``[yhat_0.1, yhat_0.9]``.

The definitions are GluonTS' (``gluonts.ev``, checked in ``tests/test_evaluation.py``). The
metrics are computed here in numpy rather than through ``gluonts.ev`` because two edge cases
need a rule GluonTS leaves as NaN/inf: sMAPE of an exact zero forecast of a zero actual
(``0/0``, common on solar and count data) counts as a zero error, and a window whose past has
zero seasonal error (a constant history) is left out of MASE, with the count reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from tsfm.data.backtest import backtest_windows
from tsfm.data.loading import load_series
from tsfm.errors import InputError
from tsfm.models.base import DEFAULT_QUANTILES

ID, TIME, TARGET, CUTOFF = "unique_id", "ds", "y", "cutoff"
RELATIVE_METRICS: tuple[str, ...] = ("MASE", "sMAPE", "WQL")


def _check_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what} is missing column(s) {', '.join(missing)}: expected a long frame with {', '.join(columns)}"
        )


def backtest_splits(
    df: pd.DataFrame, h: int, n_windows: int = 1, step: int | None = None
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Split every series into ``n_windows`` test windows of ``h`` points at its end, ``step``
    (default ``h``) apart: the windows of :func:`tsfm.data.backtest.backtest_windows`, as frames.

    Returns ``[(context_df, actual_df), ...]`` earliest window first; ``context_df`` holds every
    row of every series up to the window's cutoff, ``actual_df`` the window's ``h`` points.
    Rows keep the input's columns and are sorted by ``unique_id, ds``. Points count on the
    series' grid (the frame is read with ``load_series``), so a series with missing stamps is
    split where the Forecaster splits it: a grid point without a row appears as a row whose
    values are NaN (in ``actual_df``, and at the cutoff in ``context_df``, so that a forecaster
    reading the context continues the same grid).
    """
    _check_columns(df, (ID, TIME, TARGET), "the backtest frame")
    if h < 1 or n_windows < 1:
        raise InputError(f"h and n_windows must be positive (got h={h}, n_windows={n_windows})")
    data = df.sort_values([ID, TIME], kind="stable").reset_index(drop=True)
    series = load_series(data, id_col=ID, time_col=TIME, target=TARGET, min_length=1)
    code = pd.Index(series.ids).get_indexer(data[ID].astype(str))  # series of every row
    grids = [series.timestamps(i) for i in range(len(series))]
    position = np.empty(len(data), dtype=np.int64)  # grid position of every row
    for i, rows in pd.Series(np.arange(len(data))).groupby(code, sort=False):
        position[rows.to_numpy()] = grids[i].get_indexer(data[TIME].iloc[rows.to_numpy()])
    if (code < 0).any() or (position < 0).any():
        raise InputError("the backtest frame's 'ds' must be timestamps or integer steps "
                         "(e.g. parsed with pd.to_datetime)")
    first_row = pd.Series(np.arange(len(data))).groupby(code, sort=False).first().sort_index().to_numpy()
    splits = []
    for head, _ in backtest_windows(series, h, n_windows, step):
        cut = head.lengths[code]  # rows before it are context
        context = data[position < cut]
        actual = data[(position >= cut) & (position < cut + h)]
        context = _with_missing_points(context, data, head.lengths - 1, h=1, position=position, code=code,
                                       grids=grids, first_row=first_row)
        actual = _with_missing_points(actual, data, head.lengths, h=h, position=position, code=code,
                                      grids=grids, first_row=first_row)
        splits.append((context.reset_index(drop=True), actual.reset_index(drop=True)))
    return splits


def _with_missing_points(
    part: pd.DataFrame, data: pd.DataFrame, starts: np.ndarray, h: int, *, position: np.ndarray,
    code: np.ndarray, grids: list[pd.Index], first_row: np.ndarray,
) -> pd.DataFrame:
    """``part`` with a NaN row for each grid point ``starts[i] .. starts[i] + h - 1`` of series ``i``
    that has no row in ``data`` (none on series without gaps)."""
    present = pd.MultiIndex.from_arrays([code, position])
    wanted = pd.MultiIndex.from_arrays([np.repeat(np.arange(len(starts)), h), (starts[:, None] + np.arange(h)).ravel()])
    missing = wanted[~wanted.isin(present)]
    if len(missing) == 0:
        return part
    series, points = missing.get_level_values(0).to_numpy(), missing.get_level_values(1).to_numpy()
    filler = pd.DataFrame({c: pd.Series(np.nan, index=range(len(missing)), dtype=float) for c in data.columns})
    filler[ID] = data[ID].to_numpy()[first_row[series]]
    filler[TIME] = [grids[i][p] for i, p in zip(series, points)]
    return pd.concat([part, filler], ignore_index=True).sort_values([ID, TIME], kind="stable")


def backtest_forecasts(
    forecast_fn: Callable[[pd.DataFrame], pd.DataFrame], df: pd.DataFrame, h: int, n_windows: int = 1,
    step: int | None = None,
) -> pd.DataFrame:
    """Run ``forecast_fn(context_df) -> forecast_df`` on every backtest window.

    Returns Nixtla's cross-validation frame: the forecasts of all windows with the actual ``y``
    and a ``cutoff`` column (the last timestamp of each series' context), so that
    ``evaluate_forecasts(cv, cv, df, m)`` scores it. Each window's forecast must cover exactly
    the window's ``h`` points of every series.
    """
    frames = []
    for context, actual in backtest_splits(df, h, n_windows, step):
        forecast = forecast_fn(context)
        _check_columns(forecast, (ID, TIME), "the forecast frame")
        forecast = forecast.drop(columns=[TARGET, CUTOFF], errors="ignore")
        window = _strict_merge(actual[[ID, TIME, TARGET]], forecast, [ID, TIME])
        last = context.groupby(ID, sort=False)[TIME].max()
        window.insert(2, CUTOFF, window[ID].map(last).to_numpy())
        frames.append(window)
    return pd.concat(frames, ignore_index=True)


def seasonal_error(y: np.ndarray, m: int) -> float:
    """Mean absolute seasonal difference ``mean |y_t - y_{t-m}|`` of a history (NaN ignored).

    ``m`` longer than the history falls back to 1, as in GluonTS; a history of one point has no
    seasonal error (NaN).
    """
    y = np.asarray(y, dtype=float)
    if m > len(y) - 1:  # GluonTS: m > len -> 1; m == len leaves no pair, so also fall back
        m = 1
    diffs = np.abs(y[m:] - y[:-m]) if len(y) > m else np.array([])
    return float(np.nanmean(diffs)) if np.isfinite(diffs).any() else math.nan


def quantile_column(q: float) -> str:
    """Column name of a quantile level in a forecast frame: the level as written (``"0.1"``)."""
    return str(float(q))


def _strict_merge(actual: pd.DataFrame, forecast: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Actual rows joined with forecast rows; every row on either side must find exactly one partner."""
    for frame, what in ((forecast, "forecast"), (actual, "actual")):
        if frame.duplicated(keys).any():
            raise InputError(
                f"{what} frame has duplicate ({', '.join(keys)}) rows: give one row per series and step "
                "(overlapping windows need a 'cutoff' column in both frames)"
            )
    joined = actual.merge(forecast, on=keys, how="outer", indicator=True)
    unmatched = joined["_merge"] != "both"
    if unmatched.any():
        row = joined.loc[unmatched].iloc[0]
        side = "no forecast" if row["_merge"] == "left_only" else "no actual value"
        raise InputError(
            f"{int(unmatched.sum())} row(s) cannot be scored, e.g. {row[ID]} at {row[TIME]} has {side}: "
            "forecasts and actuals must cover the same (unique_id, ds)"
        )
    return joined.drop(columns="_merge")


def _joined(forecast_df: pd.DataFrame, actual_df: pd.DataFrame, q_cols: list[str]) -> pd.DataFrame:
    """Forecast quantiles with their actual ``y`` (and ``cutoff`` when the forecasts have one)."""
    keys = [ID, TIME]
    if CUTOFF in forecast_df.columns and CUTOFF in actual_df.columns:
        keys.append(CUTOFF)
    extra = [CUTOFF] if CUTOFF in forecast_df.columns and CUTOFF not in keys else []
    return _strict_merge(actual_df[keys + [TARGET]], forecast_df[keys + q_cols + extra], keys)


def _scales(joined: pd.DataFrame, context_df: pd.DataFrame, m: int) -> np.ndarray:
    """Seasonal error per forecast row, from that series' points before the row's window starts."""
    window = [ID, CUTOFF] if CUTOFF in joined.columns else [ID]
    starts = joined.groupby(window, sort=False)[TIME].transform("min").rename("_start")
    history = {
        uid: (g[TIME].to_numpy(), g[TARGET].to_numpy(dtype=float))
        for uid, g in context_df.sort_values([ID, TIME]).groupby(ID, sort=False)
    }
    windows = pd.concat([joined[ID], starts], axis=1).drop_duplicates()
    per_window = []
    for uid, start in zip(windows[ID].to_numpy(), windows["_start"].to_numpy()):
        if uid not in history:
            raise InputError(f"series {uid} has forecasts but no history in the context frame")
        times, values = history[uid]
        per_window.append(seasonal_error(values[: np.searchsorted(times, start, side="left")], m))
    windows["_scale"] = per_window
    rows = pd.concat([joined[ID], starts], axis=1).merge(windows, on=[ID, "_start"], how="left")
    return rows["_scale"].to_numpy()


def check_point_level(levels: Sequence[float]) -> None:
    """InputError unless the levels hold 0.5: the median is the point forecast MASE and sMAPE score."""
    if 0.5 not in levels:
        raise InputError("quantiles must include 0.5: the median is the point forecast scored by MASE and sMAPE")


def evaluate_forecasts(
    forecast_df: pd.DataFrame,
    actual_df: pd.DataFrame,
    context_df: pd.DataFrame,
    m: int,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> dict[str, float]:
    """Score forecasts of one task: MASE, sMAPE (0-200), WQL and the 10-90% band coverage.

    ``forecast_df`` has ``unique_id, ds`` and one column per quantile level (``"0.1"`` ...,
    ``"0.5"`` is the point forecast); with several windows it also has ``cutoff`` (as returned
    by ``backtest_forecasts``). ``actual_df`` holds the true ``y`` at exactly those rows.
    ``context_df`` holds each series' history: the full series or just the window's context —
    only points before each window's first forecast step enter the MASE scale, whose seasonal lag
    ``m`` counts rows (give a missing point as a NaN row, not no row). NaN actuals are left out;
    MASE and sMAPE average each series x window over its scored points, then over the windows
    (GluonTS's mean per item). Returns floats; ``n_points`` counts scored points,
    ``n_mase_skipped`` the windows with a constant history (zero seasonal error) left out of MASE.
    Integer and text ``unique_id`` columns match as text.
    """
    levels = [float(q) for q in quantiles]
    check_point_level(levels)
    q_cols = [quantile_column(q) for q in levels]
    levels_as_written = {c: quantile_column(float(c)) for c in forecast_df.columns if _is_level(c)}
    forecast_df = forecast_df.rename(columns=levels_as_written)
    _check_columns(forecast_df, [ID, TIME, *q_cols], "the forecast frame")
    _check_columns(actual_df, (ID, TIME, TARGET), "the actual frame")
    _check_columns(context_df, (ID, TIME, TARGET), "the context frame")
    if m < 1:
        raise InputError(f"the seasonal period m must be >= 1 (got {m})")
    forecast_df, actual_df, context_df = _same_id_type(forecast_df, actual_df, context_df)
    time_types = {_time_kind(f[TIME]) for f in (forecast_df, actual_df, context_df)}
    if len(time_types) > 1:
        raise InputError(
            "'ds' has different types across the forecast, actual and context frames "
            f"({', '.join(sorted(time_types))}): parse them the same way (e.g. pd.to_datetime)"
        )

    joined = _joined(forecast_df, actual_df, q_cols)
    preds = joined[q_cols].to_numpy(dtype=float)
    if not np.isfinite(preds).all():
        raise InputError("forecast frame has NaN or infinite quantiles: every scored step needs finite forecasts")
    scale = _scales(joined, context_df, m)
    observed = np.isfinite(joined[TARGET].to_numpy(dtype=float))
    y = joined[TARGET].to_numpy(dtype=float)[observed]
    preds, scale = preds[observed], scale[observed]
    if len(y) == 0:
        raise InputError("no actual value to score: every actual y is NaN")

    median = preds[:, levels.index(0.5)]
    abs_err = np.abs(y - median)
    scaled_ok = np.isfinite(scale) & (scale > 0)
    denom = np.abs(y) + np.abs(median)
    smape_terms = np.divide(2.0 * abs_err, denom, out=np.zeros_like(abs_err), where=denom > 0)
    window = joined.loc[observed, [ID, CUTOFF] if CUTOFF in joined.columns else [ID]]
    group = window.groupby(list(window.columns), sort=False).ngroup().to_numpy()

    def mean_over_windows(terms: np.ndarray, where: np.ndarray) -> float:
        """Mean per series x window over its observed points, then over windows (as GluonTS, per item)."""
        sums = np.bincount(group[where], weights=terms[where], minlength=group.max() + 1)
        counts = np.bincount(group[where], minlength=group.max() + 1)
        return float(np.mean(sums[counts > 0] / counts[counts > 0])) if where.any() else math.nan

    levels_arr = np.asarray(levels)
    below = (y[:, None] <= preds).astype(float)
    q_loss = 2.0 * np.abs((y[:, None] - preds) * (below - levels_arr[None, :]))
    abs_sum = np.abs(y).sum()
    scores = {
        "MASE": mean_over_windows(np.divide(abs_err, scale, out=np.zeros_like(abs_err), where=scaled_ok), scaled_ok),
        "sMAPE": 100.0 * mean_over_windows(smape_terms, np.ones(len(y), dtype=bool)),
        "WQL": float(np.mean(q_loss.sum(axis=0) / abs_sum)) if abs_sum > 0 else math.nan,
    }
    if 0.1 in levels and 0.9 in levels:
        lo, hi = preds[:, levels.index(0.1)], preds[:, levels.index(0.9)]
        scores["coverage_10_90"] = float(np.mean((y >= lo) & (y <= hi)))
    scores["n_points"] = float(len(y))
    scores["n_mase_skipped"] = float(window[~scaled_ok].drop_duplicates().shape[0])
    return scores


def _time_kind(times: pd.Series) -> str:
    """``"datetime"`` for any naive datetime dtype (resolution aside), ``"datetime with a time zone"``
    for any aware one, else the dtype."""
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        return "datetime with a time zone"
    return "datetime" if pd.api.types.is_datetime64_any_dtype(times) else str(times.dtype)


def _same_id_type(*frames: pd.DataFrame) -> tuple[pd.DataFrame, ...]:
    """The frames with ``unique_id`` as text in all of them when their types differ (forecasts name
    series as text, so integer ids of the user's frame are matched as written)."""
    if len({str(f[ID].dtype) for f in frames}) == 1:
        return frames
    return tuple(f.assign(**{ID: f[ID].astype(str)}) for f in frames)


def _is_level(column: object) -> bool:
    """True for a quantile column name such as ``"0.1"`` or ``0.1`` (so ``"0.10"`` matches too)."""
    try:
        value = float(column)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return 0.0 < value < 1.0 and not isinstance(column, bool)


def aggregate_relative(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    baseline: str = "SeasonalNaive",
    metrics: Sequence[str] = RELATIVE_METRICS,
) -> dict[str, dict[str, float]]:
    """Geometric mean over tasks of ``score / baseline score`` per model and metric.

    ``scores`` is ``{task: {model: {metric: value}}}``. Every task counts: a model missing a
    task, or a non-finite ratio there (failed run, zero baseline), makes that metric NaN rather
    than silently averaging over fewer tasks. A ratio of 0 (perfect forecast) gives 0.
    """
    if not scores:
        raise InputError("no task scores to aggregate")
    models = sorted({model for per_task in scores.values() for model in per_task})
    missing = [task for task, per_task in scores.items() if baseline not in per_task]
    if missing:
        raise InputError(f"baseline '{baseline}' has no scores on task(s) {', '.join(missing)}: run it on every task")
    result: dict[str, dict[str, float]] = {}
    for model in models:
        result[model] = {}
        for metric in metrics:
            ratios = []
            for per_task in scores.values():
                value = per_task.get(model, {}).get(metric, math.nan)
                base = per_task[baseline].get(metric, math.nan)
                ratios.append(value / base if base > 0 else math.nan)
            ratios_arr = np.asarray(ratios, dtype=float)
            ok = np.isfinite(ratios_arr).all() and (ratios_arr >= 0).all()
            with np.errstate(divide="ignore"):
                result[model][metric] = float(np.exp(np.mean(np.log(ratios_arr)))) if ok else math.nan
    return result
