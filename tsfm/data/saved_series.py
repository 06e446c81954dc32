"""A :class:`SeriesSet` saved to one ``.npz`` (arrays + a JSON header; no pickle) and read back."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tsfm.data.series_set import SeriesSet


def save_series(series: SeriesSet, path: str | Path) -> Path:
    """Write a SeriesSet to one ``.npz`` (arrays + a JSON header; no pickle), for ``Forecaster.save``."""
    def flat(arrays: list[np.ndarray] | None) -> np.ndarray:
        return np.zeros((0, 0), np.float32) if arrays is None else np.concatenate(arrays, axis=0)

    tz = series.tz
    if isinstance(tz, _dt.tzinfo) and not hasattr(tz, "zone") and not hasattr(tz, "key"):
        tz = {"offset_seconds": tz.utcoffset(None).total_seconds()} if tz.utcoffset(None) is not None else str(tz)
    elif tz is not None:
        tz = str(getattr(tz, "zone", None) or getattr(tz, "key", None) or tz)
    header = {
        "ids": [str(i) for i in series.ids], "freq": series.freq,
        "starts": [int(pd.Timestamp(t).value) for t in series.starts], "target_names": list(series.target_names),
        "past_exog_names": list(series.past_exog_names), "future_exog_names": list(series.future_exog_names),
        "layout": series.layout, "ids_as_channels": series.ids_as_channels, "n_gaps": list(series.n_gaps),
        "tz": tz, "wall_time": series.wall_time, "step_index": series.step_index, "resolution": series.resolution,
        "inferred": series.inferred, "int_dates": series.int_dates,
        "id_dtype": None if series.id_dtype is None else str(series.id_dtype),
        "has_past": series.past_exog is not None, "has_future": series.future_exog is not None,
    }
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez(handle, header=np.array(json.dumps(header)), values=flat(series.values), lengths=series.lengths,
                 past=flat(series.past_exog), future=flat(series.future_exog),
                 scales=np.zeros((0, 0)) if series.scales is None else series.scales)
    return path


def load_saved_series(path: str | Path) -> SeriesSet:
    """The SeriesSet ``save_series`` wrote."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        cuts = np.cumsum(data["lengths"])[:-1]

        def split(name: str, present: bool = True) -> list[np.ndarray] | None:
            return [a.copy() for a in np.split(data[name], cuts)] if present else None

        tz = header["tz"]
        if isinstance(tz, dict):
            tz = _dt.timezone(_dt.timedelta(seconds=tz["offset_seconds"]))
        return SeriesSet(
            ids=header["ids"], freq=header["freq"], starts=[pd.Timestamp(int(t)) for t in header["starts"]],
            values=split("values"), target_names=header["target_names"],
            past_exog=split("past", header["has_past"]), future_exog=split("future", header["has_future"]),
            past_exog_names=header["past_exog_names"], future_exog_names=header["future_exog_names"],
            layout=header["layout"], ids_as_channels=header["ids_as_channels"], n_gaps=header["n_gaps"],
            tz=tz, wall_time=header["wall_time"], step_index=header["step_index"],
            resolution=header["resolution"], inferred=header.get("inferred"), int_dates=header.get("int_dates"),
            scales=data["scales"].copy() if data["scales"].size else None, id_dtype=header.get("id_dtype"),
        )
