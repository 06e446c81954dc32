"""User tables in, series on one regular grid out: :func:`load_series`, the input boundary.

This is the input boundary of ``tsfm forecast`` and ``Forecaster``: every problem a user can fix
(missing columns, text in the target, bad or duplicate timestamps, no inferable frequency, too
short or empty series, unreadable files) becomes one :class:`~tsfm.errors.InputError` line that
names the problem and the fix. What comes out is a :class:`~tsfm.data.series_set.SeriesSet`:
one float32 array per series on a regular grid, NaN where nothing was observed.

The steps, one module each: read the file (``tables``), tell the columns' roles and the layout
(``columns``), parse the stamps (``timestamps``), gather long-form rows (``rows``), check them
(``validation``), infer the frequency (``freq``, on the grids of ``grid``), then put the rows on
the grid here (fill modes, magnitude scaling). Timestamps are handled as int64 nanoseconds;
forecasts come back in the user's zone (``forecast_frame``). Values whose magnitude float32
cannot hold (around 1e300 or 1e-300) are divided by a per-series power of ten in float64 first
(``SeriesSet.scales``) and multiplied back in ``forecast_frame``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.frequencies import to_offset

from tsfm.data.columns import ID_ALIASES, resolve_roles, values_only
from tsfm.data.filling import FILL_MODES, fill_flat
from tsfm.data.freq import check_user_freq, infer_common_freq, short_alias, user_offset
from tsfm.data.grid import Calendar, Segments, grid_of, grid_positions
from tsfm.data.messages import RowSource, quoted_names
from tsfm.data.rows import Rows, ids_to_channels, long_rows, sort_rows, wide_rows
from tsfm.data.series_set import SeriesSet
from tsfm.data.tables import clean_columns, read_header, read_table
from tsfm.data.validation import check_duplicates, check_observed
from tsfm.errors import InputError
from tsfm_runtime import rules
from tsfm_runtime.freq import infer_resolution

ROW_STEP = "step"  # the time column a table of numbers alone gets: its row numbers


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    """A column name or names as a list without repeats."""
    if x is None:
        return []
    return list(dict.fromkeys([x] if isinstance(x, str) else [str(c) for c in x]))


def _as_frame(data: str | Path | pd.DataFrame | pd.Series | np.ndarray | Sequence[Any],
              id_col: str | None) -> tuple[pd.DataFrame, RowSource]:
    step_col = None
    if isinstance(data, (list, tuple)) and data and all(isinstance(x, pd.Series) or _array_like(x) for x in data):
        data, step_col = _values_as_long_frame(data)  # Chronos' input: one array per series, any lengths
    elif _array_like(data):
        data = _values_as_series(data)
    if isinstance(data, pd.Series):
        named = data.name is not None and str(data.name) != "ds"
        frame = data.to_frame(name=str(data.name) if named else "y")
        if ptypes.is_integer_dtype(data.index):  # numbered values: a RangeIndex numbers steps, other integers
            frame = frame.reset_index(drop=True)  # follow a time column's rule (years, yyyymmdd dates or steps)
            frame.insert(0, "ds", data.index.to_numpy())
            step_col = "ds" if isinstance(data.index, pd.RangeIndex) else None
        data = frame
    if isinstance(data, pd.DataFrame):
        df = _index_and_periods_as_columns(data)
        if len(df) == 0:
            raise InputError("the data frame has no rows")
        return df, RowSource(is_file=False, step_col=step_col)
    if not isinstance(data, (str, os.PathLike)):
        raise InputError(f"expected a pandas DataFrame or Series, a 1-D array of values, or the path of a CSV or "
                         f"Parquet file; got {type(data).__name__}")
    path = Path(data)
    header = read_header(path) if path.is_file() else []
    id_cols = [c for c in header if c == id_col or c.lower() in ID_ALIASES]
    df = read_table(path, dtype={c: str for c in id_cols} or None)
    return _index_and_periods_as_columns(df), RowSource(is_file=True)  # a Parquet file keeps a frame's index


def _index_and_periods_as_columns(df: pd.DataFrame) -> pd.DataFrame:
    """A DatetimeIndex or an (id, ds) MultiIndex as columns, and periods (sktime's and statsmodels'
    PeriodIndex) as their starts."""
    if not isinstance(df.index, pd.RangeIndex):
        stamps = (pd.DatetimeIndex, pd.PeriodIndex)
        names = [n if n is not None else ("ds" if isinstance(df.index, stamps) else f"level_{i}")
                 for i, n in enumerate(df.index.names)]
        df = df.rename_axis(names).reset_index()
    periods = [c for c in df.columns if isinstance(df[c].dtype, pd.PeriodDtype)]
    if periods:
        df = df.assign(**{c: df[c].dt.to_timestamp() for c in periods})
    return clean_columns(df)


def _array_like(data: object) -> bool:
    """A list, a tuple, or an array other than pandas' (numpy, torch, ...: anything with ``__array__``)."""
    if isinstance(data, (pd.Series, pd.DataFrame, str, bytes)):
        return False
    return isinstance(data, (list, tuple)) or (hasattr(data, "__array__") and np.ndim(data) > 0)


def _values_as_series(data: np.ndarray | Sequence[float]) -> pd.Series:
    """A 1-D array or list of numbers: one series of integer steps (NaN where missing)."""
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as err:  # RuntimeError: a torch tensor that requires grad
        raise InputError(f"an array or list of data must hold numbers (NaN where missing): {err}") from None
    if values.ndim != 1:
        raise InputError(f"an array of data is one series: pass a 1-D array (got shape {values.shape}); for "
                         "several, a list of 1-D arrays or a DataFrame with one column per series")
    return pd.Series(values, name="y")


def _values_as_long_frame(items: Sequence[np.ndarray | Sequence[float] | pd.Series]) -> tuple[pd.DataFrame, str | None]:
    """A list of 1-D arrays or pandas Series: series 0, 1, ... (the Series' names when each has its own),
    each as long as its array, and the name of the time column when it holds integer steps. Series
    indexed by times keep them; arrays and RangeIndex Series are integer steps, as alone."""
    timed = [isinstance(x, pd.Series) and not isinstance(x.index, pd.RangeIndex) for x in items]
    if any(timed) and not all(timed):
        raise InputError("a list of series mixes pandas Series indexed by times with arrays or RangeIndex "
                         "Series: give every series its times, or none")
    names = [str(x.name) for x in items if isinstance(x, pd.Series) and x.name is not None]
    ids = names if len(set(names)) == len(items) else [str(i) for i in range(len(items))]
    values = [_values_as_series(x).to_numpy() for x in items]
    times = [x.index if isinstance(x, pd.Series) else pd.RangeIndex(len(v)) for x, v in zip(items, values)]
    frame = pd.DataFrame({"unique_id": np.repeat(ids, [len(v) for v in values]),
                          "ds": times[0].append(times[1:]), "y": np.concatenate(values)})
    return frame, None if all(timed) else "ds"


def _drop_empty_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows with no value at all (spreadsheet exports end with ',,,'); cheap when there are none."""
    for name in df.columns:
        col = df[name]
        if ptypes.is_numeric_dtype(col) and not ptypes.is_bool_dtype(col) and not col.hasnans:
            return df
    return df.dropna(how="all")


def _place(rows: Rows, freq: str | None, fill: str, min_length: int, src: RowSource) -> SeriesSet:
    rows = sort_rows(rows)
    check_duplicates(rows, src)

    first = np.flatnonzero(np.r_[True, rows.codes[1:] != rows.codes[:-1]])
    seg = Segments(first=first, counts=np.diff(np.r_[first, len(rows.codes)]))
    cal = Calendar(rows.times)
    resolution = None
    if rows.steps and freq is not None:  # integer steps: --freq says what a step is (season, horizon),
        resolution = short_alias(user_offset(freq).freqstr)  # the integers how far apart steps are
        freq = None
    try:
        if freq is None:
            freq = infer_common_freq(rows.ids, cal, seg)
        else:
            freq = check_user_freq(freq, rows.ids, cal, seg)
    except InputError as err:
        if rows.slash_dates:
            raise InputError(f"{err}; dates like 03/04/2020 were read month-first: if they are day-first, "
                             "write them as ISO dates (2020-04-03)") from None
        raise
    pos, _ = grid_positions(grid_of(to_offset(freq)), cal, seg)

    lengths = pos[seg.last] + 1
    seg_start = np.r_[0, np.cumsum(lengths)[:-1]]
    dest = seg_start[seg.of_rows()] + pos
    total = int(lengths.sum())
    scales = _magnitude_scales(rows.values, seg)  # [K, C] or None

    def on_grid(x: np.ndarray, scale: np.ndarray | None = None, filled: bool = True) -> np.ndarray:
        out = np.full((total, x.shape[1]), np.nan)
        out[dest] = x if scale is None else x / scale[seg.of_rows()]
        return (fill_flat(out, seg_start, fill) if filled else out).astype(np.float32)

    values = on_grid(rows.values, scales)
    check_observed(rows, seg, min_length)
    split = lambda a: np.split(a, seg_start[1:])  # noqa: E731
    # integer steps without --freq: the seasons say what a step is (read before any fill: a filled gap is no evidence)
    inferred = infer_resolution(split(on_grid(rows.values, scales, filled=False))) \
        if rows.steps and resolution is None else None
    starts = pd.DatetimeIndex(rows.times[seg.first].astype("datetime64[ns]"))
    return SeriesSet(
        ids=list(rows.ids),
        freq=freq,
        starts=list(starts),
        values=split(values),
        target_names=list(rows.target_names),
        past_exog=split(on_grid(rows.past)) if rows.past.shape[1] else None,
        future_exog=split(on_grid(rows.future)) if rows.future.shape[1] else None,
        n_gaps=[int(g) for g in lengths - seg.counts],
        tz=rows.tz, wall_time=rows.wall, step_index=rows.steps, resolution=resolution, inferred=inferred,
        scales=scales,
        month_first=rows.slash_dates,
        int_dates=rows.int_dates,
    )


def _magnitude_scales(values: np.ndarray, seg: Segments) -> np.ndarray | None:
    """[K, C] float64 powers of ten for series outside ``rules.SAFE_MAGNITUDE`` (``rules.magnitude_scales``)."""
    with np.errstate(invalid="ignore"):
        biggest = np.fmax.reduceat(np.abs(values), seg.first, axis=0) if len(values) else np.zeros((0, values.shape[1]))
    return rules.magnitude_scales(biggest)


def load_series(
    data: str | Path | pd.DataFrame | pd.Series | np.ndarray | Sequence[Any],
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | Sequence[str] | None = None,
    past_exog: Sequence[str] | None = None,
    future_exog: Sequence[str] | None = None,
    freq: str | None = None,
    multivariate: bool = False,
    fill: str = "mask",
    min_length: int = 3,
) -> SeriesSet:
    """Validate a long or wide table and put every series on one regular grid.

    Long: one row per (id, time), targets as columns (several targets -> channels per id).
    Wide: a time column and one numeric column per series (``multivariate=True``: one item whose
    channels are those columns; for long input with one target, the ids become the channels).
    Rows are sorted by time per id; ids keep first-appearance order; fully empty rows are dropped.
    A Series holds one series (its index the times; a RangeIndex means integer steps), as does a
    1-D array or list; a list of 1-D arrays holds series "0", "1", ... of integer steps; a
    PeriodIndex or period column is read as the periods' starts.
    ``fill``: "mask" (keep NaN; also "none"), "ffill", "interpolate" (trailing gaps hold the last
    value, leading NaN stay) or "zero", applied to targets and exog. Raises InputError.
    """
    fill = "mask" if fill == "none" else fill
    if fill not in FILL_MODES:
        raise InputError(f"unknown fill {fill!r}: use one of none, mask, ffill, interpolate, zero")
    targets, past, future = _as_list(target), _as_list(past_exog), _as_list(future_exog)
    df, src = _as_frame(data, id_col)
    named_values = set(df.columns) <= {*targets, *past, *future}  # every column a target or covariate: no time
    if id_col is None and time_col is None and ROW_STEP not in df.columns and (named_values or values_only(df)):
        numbers = df.index if isinstance(df.index, pd.RangeIndex) else np.arange(len(df))  # a slice keeps its own
        df, time_col = df.assign(**{ROW_STEP: np.asarray(numbers)}), ROW_STEP  # each row the next step, empty or not
        src = replace(src, step_col=ROW_STEP)
    df = _drop_empty_rows(df)
    if len(df) == 0:
        raise InputError("the input has no rows with values")
    roles = resolve_roles(df, id_col, time_col, targets, past, future)
    if roles.layout == "long":
        rows = long_rows(df, roles, past, future, src)
    else:
        rows = wide_rows(df, roles, past, future, multivariate, src)
    if roles.layout == "long" and multivariate and len(roles.targets) == 1:
        check_duplicates(sort_rows(rows), src)
        rows = ids_to_channels(rows)
    if not rows.ids:  # a wide table whose series columns are all empty
        raise InputError(f"series with no values (all missing): {quoted_names(rows.empty_ids)}; "
                         "drop them or fill them in")
    series = _place(rows, freq, fill, min_length, src)
    series.layout = roles.layout
    series.ids_as_channels = rows.channels_are_series
    series.past_exog_names, series.future_exog_names = past, future
    if roles.layout == "long" and not rows.channels_are_series:
        series.id_dtype = numeric_dtype(df[roles.id_col])
    return series


def numeric_dtype(ids: pd.Series) -> Any:
    """The dtype of an id column of numbers (not booleans), in which frames give the ids back; else None."""
    numeric = pd.api.types.is_numeric_dtype(ids) and not pd.api.types.is_bool_dtype(ids)
    return ids.dtype if numeric else None
