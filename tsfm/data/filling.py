"""Missing values filled along time (``Forecaster(fill=...)``), each series on its own.

Filling is a step of reading a history: a backtest fills each window's history alone, so a gap just
before a cutoff is never interpolated toward values after it, and missing actuals stay missing.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tsfm.data.series_set import SeriesSet

FILL_MODES: tuple[str, ...] = ("mask", "ffill", "interpolate", "zero")


def fill_flat(flat: np.ndarray, seg_start: np.ndarray, how: str) -> np.ndarray:
    """Fill NaN along time within each series ([total, C]; series start at ``seg_start``)."""
    if how == "mask" or not np.isnan(flat).any():
        return flat
    if how == "zero":
        return np.nan_to_num(flat, nan=0.0)
    n = len(flat)
    row_start = np.repeat(seg_start, np.diff(np.r_[seg_start, n]))[:, None]
    idx = np.arange(n)[:, None]
    valid = ~np.isnan(flat)
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    has_prev = prev >= row_start
    prev_val = np.where(has_prev, np.take_along_axis(flat, np.maximum(prev, 0), axis=0), np.nan)
    if how == "ffill":
        return np.where(valid, flat, prev_val)
    # interpolate: linear between neighbours; trailing gaps hold the last value, leading stay NaN
    row_end = np.repeat(np.r_[seg_start[1:], n], np.diff(np.r_[seg_start, n]))[:, None]
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1], axis=0)[::-1]
    has_next = nxt < row_end
    next_val = np.take_along_axis(flat, np.minimum(nxt, n - 1), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (idx - prev) / np.maximum(nxt - prev, 1)
        interp = prev_val + (next_val - prev_val) * frac
    out = np.where(has_prev & has_next, interp, prev_val)
    return np.where(valid, flat, out)


def filled(series: SeriesSet, how: str) -> SeriesSet:
    """``series`` with the NaN of its values and covariates filled by ``how`` (one of ``FILL_MODES``)."""
    if how in ("mask", "none") or not len(series):
        return series

    def fill_each(arrays: list[np.ndarray] | None) -> list[np.ndarray] | None:
        if arrays is None:
            return None
        lengths = np.array([len(a) for a in arrays])
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        flat = fill_flat(np.concatenate(arrays).astype(np.float64), starts, how).astype(np.float32)
        return np.split(flat, starts[1:])

    return replace(series, values=fill_each(series.values), past_exog=fill_each(series.past_exog),
                   future_exog=fill_each(series.future_exog))
