"""Model-ready inference windows from a :class:`~tsfm.data.series_set.SeriesSet`.

Every series becomes the last ``context_length`` steps of its grid, cut by
:mod:`tsfm.data.window_cutting` (longer histories are cut, shorter ones left-padded with NaN and
masked; covariate windows made finite). Known-future covariates come from a frame or a set
matched to the next ``h`` stamps of every series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tsfm.data.columns import ID_ALIASES, TIME_ALIASES, column_floats, find_alias
from tsfm.data.messages import RowSource
from tsfm.data.series_set import SeriesSet
from tsfm.data.tables import clean_columns
from tsfm.data.timestamps import parse_times
from tsfm.data.window_cutting import context_windows, fill_covariates, observed_mask
from tsfm.errors import InputError
from tsfm_runtime import rules


def inference_windows(
    series: SeriesSet,
    context_length: int,
    future: SeriesSet | pd.DataFrame | None = None,
    h: int | None = None,
) -> dict[str, np.ndarray | list[str]]:
    """Context windows for ``ForecastModel.forward``.

    Returns ``past_values [N, L, C]`` float32 (NaN where missing or padded), ``past_mask
    [N, L, C]`` float32 (1 = observed), ``freq_id [N]`` int64 (TTM's resolution token), and when
    the set has covariates ``past_exog [N, L, Ep + Ef]`` (past-only columns, then the history of
    the known-future ones; names in ``past_exog_names``). With ``future`` and ``h``, also
    ``future_exog [N, h, Ef]`` (names in ``future_exog_names``), see :func:`future_exog_windows`.
    """
    if context_length < 1:
        raise ValueError("context_length must be >= 1")
    c = series.n_channels
    past_values = context_windows(series.values, context_length, width=c)
    out: dict[str, np.ndarray | list[str]] = {
        "past_values": past_values,
        "past_mask": observed_mask(past_values),
        "freq_id": np.full(len(series), series.freq_info.token, dtype=np.int64),
    }
    histories = [a for a in (series.past_exog, series.future_exog) if a is not None]
    if histories:
        exog = [np.concatenate(parts, axis=1) for parts in zip(*histories)]
        width = len(series.past_exog_names) + len(series.future_exog_names)
        out["past_exog"] = fill_covariates(context_windows(exog, context_length, width=width))
        out["past_exog_names"] = [*series.past_exog_names, *series.future_exog_names]
    if future is not None:
        if h is None:
            raise ValueError("h is required with future")
        out["future_exog"] = future_exog_windows(series, future, h)
        out["future_exog_names"] = list(series.future_exog_names)
    return out


def future_exog_windows(series: SeriesSet, future: SeriesSet | pd.DataFrame, h: int) -> np.ndarray:
    """``[N, h, Ef]`` float32 known-future covariates for the ``h`` steps after each series.

    ``future`` is a frame with the time column, the ``future_exog`` columns and, unless every
    series shares the same next ``h`` stamps, an id column (aliases as in ``load_series``); or a
    SeriesSet carrying ``future_exog``. Each id must have a row at each of the next ``h`` stamps of
    its grid, with no missing value (other rows are ignored, as AutoGluon ignores them); otherwise
    InputError naming the ids and the expected stamps.
    """
    names = list(series.future_exog_names)
    if not names:
        raise InputError("future covariates were given but no future_exog columns were named; pass future_exog=[...]")
    expected = [_in_utc(series.future_index(i, h)) for i in range(len(series))]
    if isinstance(future, SeriesSet):
        return _from_series_set(series, future, names, expected, h)
    return _from_frame(series, clean_columns(future), names, expected, h)


def _expected_text(ids: list[str], expected: list[pd.DatetimeIndex], idx: list[int]) -> str:
    i = idx[0]
    stamps = expected[i]
    span = f"{stamps[0]} .. {stamps[-1]}" if len(stamps) > 1 else f"{stamps[0]}"
    more = f" (and {len(idx) - 1} more series)" if len(idx) > 1 else ""
    return f"'{ids[i]}' needs a row at each of its {len(stamps)} steps {span}{more}; other rows are ignored"


def _from_series_set(
    series: SeriesSet, future: SeriesSet, names: list[str], expected: list[pd.DatetimeIndex], h: int
) -> np.ndarray:
    if future.future_exog is None or list(future.future_exog_names) != names:
        raise InputError(f"the future set must carry the future_exog columns {', '.join(names)}")
    by_id = {uid: j for j, uid in enumerate(future.ids)}
    missing = [i for i, uid in enumerate(series.ids) if uid not in by_id]
    pos = {i: _in_utc(future.timestamps(by_id[uid])).get_indexer(expected[i])
           for i, uid in enumerate(series.ids) if uid in by_id}
    bad = missing or [i for i, p in pos.items() if (p < 0).any()]
    if bad:
        raise InputError(f"future covariates must cover the next {h} steps of each series: "
                         f"{_expected_text(series.ids, expected, bad)}")
    arrays = [np.asarray(future.future_exog[by_id[uid]])[pos[i]] for i, uid in enumerate(series.ids)]
    return _no_missing(np.stack(arrays).astype(np.float32), series.ids, names)


def _from_frame(
    series: SeriesSet, df: pd.DataFrame, names: list[str], expected: list[pd.DatetimeIndex], h: int
) -> np.ndarray:
    cols = list(df.columns)
    time_col = find_alias(cols, TIME_ALIASES)
    id_col = find_alias(cols, ID_ALIASES)
    missing_cols = [c for c in names if c not in cols] + ([] if time_col else ["<time column>"])
    if missing_cols:
        raise InputError(f"future frame lacks {', '.join(missing_cols)}; available columns: {', '.join(cols)}")
    src = RowSource(is_file=False)
    stamps = _future_stamps(series, df[time_col], time_col, src)
    values = np.column_stack([column_floats(df[c], c, "exog", src) for c in names])
    if id_col is None or series.ids_as_channels:
        return _shared_future(series, stamps, values, names, expected, h)

    ids = df[id_col].astype(str).to_numpy()
    unknown = sorted(set(ids) - set(series.ids))
    if unknown:
        raise InputError(f"future frame has ids that are not in the history: {', '.join(unknown[:5])}")
    got = pd.MultiIndex.from_arrays([ids, stamps])
    if got.has_duplicates:
        uid, stamp = got[got.duplicated()][0]
        raise InputError(f"future frame has a duplicate row for '{uid}' at {stamp}; keep one row per id and time")
    want = pd.MultiIndex.from_arrays([np.repeat(np.asarray(series.ids, dtype=object), h), _concat(expected)])
    pos = got.get_indexer(want).reshape(len(series), h)
    bad = [i for i in range(len(series)) if (pos[i] < 0).any()]
    if bad:
        raise InputError(f"future covariates must cover the next {h} steps of each series: "
                         f"{_expected_text(series.ids, expected, bad)}")
    return _no_missing(values[pos].astype(np.float32), series.ids, names)


def _shared_future(
    series: SeriesSet, stamps: pd.Index, values: np.ndarray, names: list[str], expected: list[pd.Index], h: int,
) -> np.ndarray:
    """A frame without ids applies to every series (they must share the next ``h`` stamps)."""
    frame = pd.DataFrame(values, index=stamps)
    frame = frame[~frame.index.duplicated(keep="first")]  # ids_as_channels: one row per time
    differ = [i for i in range(len(series)) if not expected[i].equals(expected[0])]
    if differ:
        raise InputError("the future frame has no id column but the series end at different times; add an id column")
    pos = frame.index.get_indexer(expected[0])
    if (pos < 0).any():
        raise InputError(f"future covariates must cover the next {h} steps of each series: "
                         f"{_expected_text(series.ids, expected, [0])}")
    block = frame.to_numpy(np.float32)[pos]
    return _no_missing(np.broadcast_to(block, (len(series), h, len(names))).copy(), series.ids, names)


def _in_utc(stamps: pd.Index) -> pd.Index:
    """Tz-aware stamps in UTC, as ``parse_times`` reads a future frame's (others unchanged)."""
    return stamps.tz_convert("UTC") if getattr(stamps, "tz", None) is not None else stamps


def _future_stamps(series: SeriesSet, col: pd.Series, name: str, src: RowSource) -> pd.Index:
    """A future frame's stamps as the history's are given back (``SeriesSet.user_stamps``): integers
    for integer steps and for dates written as integers (2021, 20230131), else timestamps (UTC when zoned)."""
    if series.step_index or series.int_dates:
        ints = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
        if not (np.isfinite(ints).all() and (ints % 1 == 0).all()):
            raise InputError(f"the future frame's '{name}' must hold whole numbers, written as the history's times are")
        return pd.Index(ints.astype(np.int64))
    times, tz = parse_times(col, name, src)
    return _stamps(times, tz)


def _stamps(times: np.ndarray, tz: str | None) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(times.astype("datetime64[ns]"))
    return index.tz_localize(tz) if tz else index


def _concat(indexes: list[pd.DatetimeIndex]) -> pd.DatetimeIndex:
    return indexes[0].append(indexes[1:]) if indexes else pd.DatetimeIndex([])


def _no_missing(x: np.ndarray, ids: list[str], names: list[str]) -> np.ndarray:
    holes = np.argwhere(np.isnan(x))
    if holes.size:
        i, _, e = holes[0]
        raise InputError(f"future covariate '{names[e]}' is missing for '{ids[i]}'; "
                         "known-future values must be complete")
    return x


def blind_contexts(series: SeriesSet, context: int) -> np.ndarray:
    """``[K, 2]`` (series, channel) pairs with no observed value in their last ``context`` steps: a
    network would see only padding there and forecast about zero."""
    windows = inference_windows(series, context)
    return rules.blind_contexts(windows["past_values"], windows["past_mask"], context)
