"""``--plot``: history, median and the 80% band (0.1-0.9) for the first few series and targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tsfm.atomic import replace_file
from tsfm.data.series_set import SeriesSet

MAX_PANELS = 6
HISTORY_POINTS = 200


@dataclass
class Panel:
    """What one panel draws: a series' (or one of its targets') history and forecast band."""

    title: str
    history_x: pd.Index
    history_y: np.ndarray
    band_x: pd.Index
    band: pd.DataFrame  # columns 0.1, 0.5, 0.9


def panels(series: SeriesSet, band: pd.DataFrame) -> list[Panel]:
    """The first ``MAX_PANELS`` (series, target) pairs of ``series`` with their rows of ``band``
    (``Forecaster.predict_band``). Dates written as integers (20230131) are drawn as the dates they
    are, so that a month boundary is one day and not 70 steps."""
    out = []
    several = series.n_channels > 1 and not series.ids_as_channels
    for i, sid in enumerate(series.ids):
        stamps = _as_dates(series, series.timestamps(i)[-HISTORY_POINTS:])
        for c, name in enumerate(series.target_names):
            if series.ids_as_channels:  # one item whose channels are the series: the rows are named by channel
                rows, title = band[band["unique_id"].astype(str) == str(name)], str(name)
            else:
                rows, title = band[band["unique_id"].astype(str) == str(sid)], str(sid)
                if several:
                    rows, title = rows[rows["target"].astype(str) == str(name)], f"{sid}: {name}"
            values = np.asarray(series.values[i])[-HISTORY_POINTS:, c]  # in units of SeriesSet.scales
            scale = float(series.scale_of(i)[c])
            if scale != 1.0:  # 1e-300 or 1e300, which matplotlib cannot draw: the panel says its unit
                rows = rows.assign(**{q: rows[q] / scale for q in ("0.1", "0.5", "0.9")})
                title = f"{title} (x {scale:g})"
            out.append(Panel(title, stamps, values, _as_dates(series, pd.Index(rows["ds"])), rows))
            if len(out) == MAX_PANELS:
                return out
    return out


def _as_dates(series: SeriesSet, stamps: pd.Index) -> pd.Index:
    if series.int_dates is None:
        return stamps
    return pd.DatetimeIndex(pd.to_datetime(pd.Index(stamps).astype(str), format=series.int_dates))


def plot_forecast(forecaster, path: str | Path, h: int | None = None) -> Path:
    """Write a picture with one panel per series and target (the first six) and return its path.

    The type follows the suffix (.png, .pdf, .svg, .jpg). It replaces ``path`` all at once
    (``tsfm.atomic.replace_file``), so a failed or interrupted write leaves no half-written picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = forecaster.series_
    drawn = panels(series, forecaster.predict_band(h=h, max_series=MAX_PANELS))
    fig, axes = plt.subplots(len(drawn), 1, figsize=(9, 2.6 * len(drawn)), squeeze=False)
    for panel, ax in zip(drawn, axes[:, 0]):
        ax.plot(panel.history_x, panel.history_y, color="#333333", lw=1.2, label="history")
        ax.fill_between(panel.band_x, panel.band["0.1"], panel.band["0.9"], color="#1f77b4", alpha=0.25,
                        label="80% band")
        ax.plot(panel.band_x, panel.band["0.5"], color="#1f77b4", lw=1.5, label="median")
        ax.set_title(panel.title, fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    total = len(series) * series.n_channels
    if total > len(drawn):
        fig.suptitle(f"first {len(drawn)} of {total} series", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        return replace_file(out, lambda tmp: fig.savefig(tmp, dpi=100, format=fmt), suffix=out.suffix)
    finally:
        plt.close(fig)
