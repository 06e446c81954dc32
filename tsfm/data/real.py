"""Real series for pretraining, and the value check that keeps evaluation series out of them.

A real source is a folder of long tables (Parquet or CSV with ``unique_id, ds, y``; ``y`` may be
missing where the source has a gap). Synthetic corpora teach shapes; real series teach what
business, macro and demographic data look like (short, trending, level shifts), which no
generator here produces.

Evaluation series must never reach a training window. Dataset builders remove known copies,
but copies come rescaled, shifted or cut, so :class:`ValueFingerprints` checks by values: two
series share a run when ``run`` consecutive values agree exactly, or ``2 * run`` agree after
z-normalising (an affine copy: other units, another base year). Runs that occur everywhere by
chance are skipped: few distinct values (zeros, plateaus) for exact runs, near-straight lines
for affine ones (every ramp z-normalises to the same shape).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.errors import InputError

__all__ = [
    "AGGREGATE_ALIASES", "TABLE_SUFFIXES", "ValueFingerprints", "aggregate_to_calendar", "read_real_series",
    "real_source_files", "table_files",
]

TABLE_SUFFIXES = (".parquet", ".csv", ".csv.gz")
# median step in days -> the alias a series of that step gets (period starts, as the corpus uses)
_STEP_ALIASES = ((300.0, "YS"), (80.0, "QS"), (27.0, "MS"), (6.5, "W-SUN"), (0.9, "D"), (0.03, "h"))
# calendar resolutions a real series can be aggregated to: (numpy unit, periods per block)
AGGREGATE_ALIASES = {"MS": ("M", 1), "QS": ("M", 3), "YS": ("Y", 1)}
_FINE_TO_COARSE = ("15min", "30min", *(alias for _, alias in reversed(_STEP_ALIASES)))  # every alias _alias gives


def table_files(folder: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The long tables of a folder (sorted), or the named ones; one-line errors when missing."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"real data folder {root} does not exist (paths are relative to the working directory)")
    if names:
        files = [root / n for n in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(f"real data files not found: {', '.join(missing)}")
        return files
    files = sorted(f for f in root.iterdir() if f.is_file() and f.name.endswith(TABLE_SUFFIXES))
    if not files:
        raise InputError(f"no .parquet or .csv tables in {root}")
    return files


def real_source_files(spec: dict[str, Any]) -> list[Path]:
    """Every file a ``real`` corpus generator reads (its tables and the evaluation tables it excludes)."""
    files = table_files(spec["path"], spec.get("files"))
    for folder in spec.get("exclude") or ():
        files += table_files(folder)
    return files


def _read_table(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path) if path.name.endswith(".parquet") else pd.read_csv(path)
    missing = {"unique_id", "ds", "y"} - set(frame.columns)
    if missing:
        raise InputError(f"{path}: a real data table needs columns unique_id, ds, y (missing {sorted(missing)})")
    # timestamps before 1678 do not fit nanoseconds; milliseconds hold every calendar date we meet
    frame["ds"] = pd.to_datetime(frame["ds"]).astype("datetime64[ms]")
    frame["unique_id"] = frame["unique_id"].astype(str)
    return frame.sort_values(["unique_id", "ds"], kind="stable")


def _alias(ds: np.ndarray) -> str:
    """The frequency alias of a regular timestamp column, from its median step."""
    if len(ds) < 2:
        return "YS"
    days = float(np.median(np.diff(ds).astype("timedelta64[s]").astype(np.float64))) / 86400.0
    for least, alias in _STEP_ALIASES:
        if days >= least:
            return alias
    return "30min" if days >= 0.015 else "15min"


def aggregate_to_calendar(ds: np.ndarray, y: np.ndarray, alias: str) -> tuple[np.datetime64, np.ndarray] | None:
    """Means of ``y`` over the calendar months, quarters or years (``alias`` MS, QS, YS) of ``ds``.

    Temporal aggregation turns a monthly series into a real quarterly and a real yearly one, which
    is how most published quarterly and yearly figures are made. A block counts when every step
    in it is observed, no row of the grid is missing in it, and it holds as many steps as the
    series' regular grid puts into a block of its length (steps of months count months, finer
    steps count days); other blocks are gaps (NaN), trimmed at either end. Returns the first
    block's start and the block means, or None when no block is complete.
    """
    unit, size = AGGREGATE_ALIASES[alias]
    keys = ds.astype(f"datetime64[{unit}]").astype(np.int64) // size  # quarters: months since 1970 // 3
    block = keys - keys.min()
    steps = np.bincount(block)
    finite = np.isfinite(y)
    observed = np.bincount(block, weights=finite.astype(np.float64), minlength=len(steps))
    sums = np.bincount(block, weights=np.where(finite, y, 0.0), minlength=len(steps))
    edges = np.array([np.datetime64(int(k * size), unit) for k in range(keys.min(), keys.max() + 2)])
    months = ds.astype("datetime64[M]").astype(np.int64)
    grid = "M" if len(ds) > 1 and np.median(np.diff(months)) >= 1 else "s"  # a monthly or quarterly grid: months
    # in seconds, a block of D days holds floor(D / step) or one more steps of a daily, weekly or hourly grid
    position = ds.astype(f"datetime64[{grid}]").astype(np.int64)
    span = np.diff(edges.astype(f"datetime64[{grid}]").astype(np.int64))
    step = np.median(np.diff(position)) if len(ds) > 1 else span.max()
    jumps = np.flatnonzero(np.diff(position) > 1.5 * step)  # rows missing, not NaN: both blocks around are partial
    whole = np.ones(len(steps), dtype=bool)
    whole[block[jumps]] = whole[block[jumps + 1]] = False
    complete = whole & (steps > 0) & (observed == steps) & (steps >= np.floor(span / step + 1e-9))
    kept = np.flatnonzero(complete)
    if len(kept) == 0:
        return None
    means = np.where(complete, sums / np.maximum(steps, 1), np.nan)[kept[0]: kept[-1] + 1]
    return edges[kept[0]].astype("datetime64[s]"), means


def read_real_series(files: Iterable[str | Path], min_length: int = 2,
                     aggregate_to: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Series of long tables as corpus entries, in file then ``unique_id`` order.

    Leading and trailing gaps are trimmed; series shorter than ``min_length`` observed-or-gap
    steps are dropped. ``item_id`` is ``<file stem>/<unique_id>``. Each series finer than an
    alias of ``aggregate_to`` (MS, QS, YS) is followed by its calendar aggregate to it
    (:func:`aggregate_to_calendar`), ``item_id`` ``<file stem>/<unique_id>@<alias>``, ``origin`` the
    ``item_id`` of the series it was made from.
    """
    entries = []
    for path in map(Path, files):
        stem = path.name.split(".")[0]
        for uid, group in _read_table(path).groupby("unique_id", sort=True):
            y = group["y"].to_numpy(dtype=np.float64)
            observed = np.flatnonzero(np.isfinite(y))
            if len(observed) == 0:
                continue
            first, last = observed[0], observed[-1] + 1
            ds = group["ds"].to_numpy()[first:last]
            freq = _alias(ds)
            if last - first >= min_length:
                entries.append({"item_id": f"{stem}/{uid}", "start": np.datetime_as_string(ds[0], unit="s"),
                                "freq": freq, "target": y[first:last].astype(np.float32)})
            for alias in aggregate_to:
                if _FINE_TO_COARSE.index(alias) <= _FINE_TO_COARSE.index(freq):
                    continue
                aggregate = aggregate_to_calendar(ds, y[first:last], alias)
                if aggregate is not None and len(aggregate[1]) >= min_length:
                    entries.append({"item_id": f"{stem}/{uid}@{alias}", "origin": f"{stem}/{uid}", "freq": alias,
                                    "start": np.datetime_as_string(aggregate[0], unit="s"),
                                    "target": aggregate[1].astype(np.float32)})
    return entries


class ValueFingerprints:
    """Runs of consecutive values of some series: ``run`` exact, ``2 * run`` up to an affine map.

    ``matches(x)`` says whether ``x`` holds a run that one of the fingerprinted series holds too.
    Exact runs count with more than ``run // 2`` distinct values; affine runs with more than
    ``run`` distinct values (steps and plateaus z-normalise alike) when a straight line leaves
    at least 2% of their variance unexplained.
    """

    def __init__(self, series: Iterable[np.ndarray], run: int = 8) -> None:
        self.run = run
        self._exact: set[bytes] = set()
        self._affine: set[bytes] = set()
        for x in series:
            exact, affine = self._keys(x)
            self._exact.update(exact)
            self._affine.update(affine)

    @classmethod
    def of_folders(cls, folders: Iterable[str | Path], run: int = 8) -> ValueFingerprints:
        """Fingerprints of every series in the long tables of some folders (evaluation sets)."""
        files = [f for folder in folders for f in table_files(folder)]
        return cls((frame["y"].to_numpy(dtype=np.float64) for path in files
                    for _, frame in _read_table(path).groupby("unique_id", sort=True)), run)

    def __len__(self) -> int:
        return len(self._exact)

    @staticmethod
    def _finite_windows(x: np.ndarray, length: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if len(x) < length:
            return np.zeros((0, length))
        windows = np.lib.stride_tricks.sliding_window_view(x, length)
        return windows[np.isfinite(windows).all(axis=1)]

    def _keys(self, x: np.ndarray) -> tuple[list[bytes], list[bytes]]:
        exact = self._finite_windows(x, self.run)
        exact = exact[_distinct(exact) > self.run // 2].astype(np.float32)
        affine = self._finite_windows(x, 2 * self.run)
        affine = affine[_distinct(affine) > self.run]
        centred = affine - affine.mean(axis=1, keepdims=True)
        ramp = np.arange(2 * self.run) - (2 * self.run - 1) / 2
        slope = centred @ ramp / (ramp @ ramp)
        residual = centred - slope[:, None] * ramp
        total = (centred**2).sum(axis=1)
        curved = (residual**2).sum(axis=1) > 0.02 * total
        z = centred[curved] / np.sqrt(total[curved] / (2 * self.run))[:, None]
        z = np.round(z, 3).astype(np.float32) + np.float32(0.0)  # + 0 turns -0.0 into 0.0
        return [w.tobytes() for w in exact], [w.tobytes() for w in z]

    def matches(self, x: np.ndarray) -> bool:
        exact, affine = self._keys(x)
        return any(k in self._exact for k in exact) or any(k in self._affine for k in affine)


def _distinct(windows: np.ndarray) -> np.ndarray:
    """Distinct values per row."""
    return 1 + (np.diff(np.sort(windows, axis=1), axis=1) != 0).sum(axis=1)
