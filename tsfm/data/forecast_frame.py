"""The output table: quantile arrays back to a long forecast frame on each series' grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tsfm.data.series_set import SeriesSet
from tsfm.errors import InputError


def level_names(levels: Sequence[float]) -> list[str]:
    """Column names of quantile levels when the user gave no spelling: ``0.1 -> "0.1"``."""
    return [str(float(q)) for q in levels]


def ids_as_given(frame: pd.DataFrame, series: SeriesSet) -> pd.DataFrame:
    """``frame``'s ``unique_id`` in the dtype of the user's id column when it held numbers (ids are
    text inside; statsforecast and AutoGluon give integer ids back as integers, so a merge with the
    input works)."""
    if series.id_dtype is None or "unique_id" not in frame.columns:
        return frame
    return frame.assign(unique_id=frame["unique_id"].astype(series.id_dtype))


def forecast_frame(
    series: SeriesSet,
    quantiles: np.ndarray,
    levels: Sequence[float],
    names: Sequence[str] | None = None,
    mean: np.ndarray | None = None,
) -> pd.DataFrame:
    """Long forecast frame ``unique_id, ds, [target], mean, <q>...`` from ``quantiles [N, H, C, Q]``.

    Rows: per series, per channel, H stamps continuing that series' grid. A ``target`` column
    (channel name) is added when C > 1, unless the channels were separate input series
    (``ids_as_channels``), which get one ``unique_id`` each. ``mean [N, H, C]`` defaults to the
    0.5 quantile.
    """
    q = np.asarray(quantiles)
    n, h, c, nq = q.shape
    if n != len(series) or c != series.n_channels or nq != len(levels):
        raise ValueError(
            f"quantiles shape {q.shape} does not match {len(series)} series, {series.n_channels} channels, "
            f"{len(levels)} levels"
        )
    names = list(names) if names is not None else level_names(levels)
    if mean is None:
        hits = [j for j, lv in enumerate(levels) if abs(float(lv) - 0.5) < 1e-9]
        if not hits:
            raise ValueError("mean not given and 0.5 is not among the levels")
        mean = q[..., hits[0]]
    mean = np.asarray(mean).reshape(n, h, c)
    if series.scales is not None:  # back to the user's magnitude, in float64
        with np.errstate(over="ignore"):
            q = q.astype(np.float64) * series.scales[:, None, :, None]
            mean = mean.astype(np.float64) * series.scales[:, None, :]
        over = np.isinf(q).any(axis=(1, 2, 3)) & np.isfinite(np.asarray(quantiles)).all(axis=(1, 2, 3))
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise InputError(f"the forecast of '{series.ids[i]}' exceeds the float64 range (about 1.8e308): "
                             "divide the series by a constant and multiply the forecast back")

    by_last: dict[pd.Timestamp, pd.DatetimeIndex] = {}  # series ending together share their future
    stamps = []
    for i in range(n):
        last = series.last_naive(i)
        if last not in by_last:
            by_last[last] = pd.date_range(last, periods=h + 1, freq=series.freq)[1:]
        stamps.append(by_last[last])
    ds = np.concatenate([np.tile(s.asi8, c) for s in stamps]).astype("datetime64[ns]") if stamps else []
    ds = series.user_stamps(pd.DatetimeIndex(ds))
    channel = np.tile(np.repeat(np.asarray(series.target_names, dtype=object), h), n)
    if series.ids_as_channels:
        uid = channel
    else:
        uid = np.repeat(np.asarray(series.ids, dtype=object), c * h)
    out = {"unique_id": uid, "ds": ds}
    if c > 1 and not series.ids_as_channels:
        out["target"] = channel
    out["mean"] = mean.transpose(0, 2, 1).reshape(-1).astype(np.float64)
    flat = q.transpose(0, 2, 1, 3).reshape(-1, nq).astype(np.float64)
    for j, name in enumerate(names):
        out[name] = flat[:, j]
    return pd.DataFrame(out)
