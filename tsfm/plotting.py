"""``--plot``: history, median and the 80% band (0.1-0.9) for the first few series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tsfm.atomic import replace_file

MAX_PANELS = 6
HISTORY_POINTS = 200


def plot_forecast(forecaster, path: str | Path, h: int | None = None) -> Path:
    """Write a picture with one panel per series (the first six) and return its path.

    The type follows the suffix (.png, .pdf, .svg, .jpg). It replaces ``path`` all at once
    (``tsfm.atomic.replace_file``), so a failed or interrupted write leaves no half-written picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = forecaster.series_
    band = forecaster.predict_band(h=h, max_series=MAX_PANELS)
    shown = min(len(series), MAX_PANELS)
    fig, axes = plt.subplots(shown, 1, figsize=(9, 2.6 * shown), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        sid = series.ids[i]
        stamps = series.timestamps(i)[-HISTORY_POINTS:]
        values = np.asarray(series.values[i])[-HISTORY_POINTS:, 0] * series.scale_of(i)[0]  # the user's units
        rows = band[band["unique_id"].astype(str) == str(sid)]
        if "target" in rows:
            rows = rows[rows["target"] == rows["target"].iloc[0]]
        ax.plot(stamps, values, color="#333333", lw=1.2, label="history")
        ax.fill_between(rows["ds"], rows["0.1"], rows["0.9"], color="#1f77b4", alpha=0.25, label="80% band")
        ax.plot(rows["ds"], rows["0.5"], color="#1f77b4", lw=1.5, label="median")
        ax.set_title(str(sid), fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
    if len(series) > shown:
        fig.suptitle(f"first {shown} of {len(series)} series", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fmt = out.suffix.lstrip(".").lower() or "png"
    try:
        return replace_file(out, lambda tmp: fig.savefig(tmp, dpi=100, format=fmt), suffix=out.suffix)
    finally:
        plt.close(fig)
