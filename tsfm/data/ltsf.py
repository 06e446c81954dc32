"""The standard long-horizon (LTSF) benchmark protocol: splits, train-statistics scaling, windows.

The protocol of Informer / Autoformer / iTransformer / S-Mamba (their ``data_provider``), restated:

- ETTh1 / ETTh2 (hourly): 12 / 4 / 4 months of 30 days, i.e. rows ``[0, 8640)`` train,
  ``[8640, 11520)`` validation, ``[11520, 14400)`` test; the last rows of the file are unused.
- any other dataset (``Dataset_Custom``, e.g. exchange_rate): ``num_train = int(0.7 n)``,
  ``num_test = int(0.2 n)``, validation the ``n - num_train - num_test`` rows between them
  (7:1:2, not 6:2:2).
- validation and test windows may take their lookback from the rows before their segment: a
  segment ``[a, b)`` yields the windows whose *targets* lie in ``[a, b)``, their inputs start
  ``lookback`` rows earlier (``border1 = a - lookback`` in the reference code). Every origin is
  a window (stride 1): ``b - a - horizon + 1`` windows per segment.
- each channel is z-normalised with the mean and population std of the training rows only;
  metrics are MSE / MAE in those normalised units, averaged over windows, steps and channels.

The files are long tables ``unique_id, ds, y`` (``../shared/data/real/dev``); :func:`read_wide`
pivots them to one column per series, in the order the series first appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from tsfm.errors import InputError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
ETT_HOUR_MONTH = 30 * 24  # rows per "month" in the ETT-hour split


@dataclass(frozen=True)
class LTSFDataset:
    """Where a benchmark dataset lives and how it is split."""

    name: str
    file: str
    split: Literal["ett_hour", "ratio"]


DATASETS: dict[str, LTSFDataset] = {
    "etth1": LTSFDataset("etth1", "etth1.csv", "ett_hour"),
    "etth2": LTSFDataset("etth2", "etth2.csv", "ett_hour"),
    "exchange_rate": LTSFDataset("exchange_rate", "exchange_rate.csv", "ratio"),
}


def ett_hour_segments(n_rows: int) -> dict[Split, tuple[int, int]]:
    """The rows each split forecasts: 12 / 4 / 4 months of 30 days (ETTh1, ETTh2)."""
    train_end = 12 * ETT_HOUR_MONTH
    val_end = train_end + 4 * ETT_HOUR_MONTH
    test_end = val_end + 4 * ETT_HOUR_MONTH
    if n_rows < test_end:
        raise InputError(f"the ETT-hour split needs {test_end} rows, the data has {n_rows}")
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, test_end)}


def ratio_segments(n_rows: int, train: float = 0.7, test: float = 0.2) -> dict[Split, tuple[int, int]]:
    """``Dataset_Custom``'s split: int(0.7 n) train, int(0.2 n) test at the end, the rest validation."""
    num_train, num_test = int(n_rows * train), int(n_rows * test)
    return {"train": (0, num_train), "val": (num_train, n_rows - num_test), "test": (n_rows - num_test, n_rows)}


def segments(split: str, n_rows: int) -> dict[Split, tuple[int, int]]:
    if split == "ett_hour":
        return ett_hour_segments(n_rows)
    if split == "ratio":
        return ratio_segments(n_rows)
    raise InputError(f"unknown LTSF split '{split}' (ett_hour or ratio)")


def window_borders(segment: tuple[int, int], lookback: int, split: Split) -> tuple[int, int]:
    """Rows ``[border1, border2)`` the windows of a split are cut from (the reference's border1/2).

    Training windows stay inside the training rows; validation and test windows take their
    lookback from the rows before their segment (never before row 0).
    """
    start, end = segment
    first = start if split == "train" else max(start - lookback, 0)
    return first, end


def num_windows(borders: tuple[int, int], lookback: int, horizon: int) -> int:
    """Windows of stride 1 with ``lookback`` inputs and ``horizon`` targets inside ``borders``."""
    return max(borders[1] - borders[0] - lookback - horizon + 1, 0)


def read_wide(path: str | Path) -> pd.DataFrame:
    """A long ``unique_id, ds, y`` CSV as a wide frame: index ``ds``, one column per series (file order)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"LTSF data file {path} not found")
    long = pd.read_csv(path)
    missing = {"unique_id", "ds", "y"} - set(long.columns)
    if missing:
        raise InputError(f"{path}: needs columns unique_id, ds, y (missing {sorted(missing)})")
    long["ds"] = pd.to_datetime(long["ds"])
    order = list(dict.fromkeys(long["unique_id"].astype(str)))
    wide = long.pivot(index="ds", columns="unique_id", values="y").sort_index()
    wide.columns = wide.columns.astype(str)
    wide = wide[order]
    if wide.isna().any().any():
        raise InputError(f"{path}: the series are not aligned on one time index (gaps after pivoting)")
    return wide


def select_column(columns: list[str], target: str) -> str:
    """The column named ``target``, or the one ending in ``_<target>`` (``ETTh1_OT`` for ``OT``)."""
    hits = [c for c in columns if c == target] or [c for c in columns if c.endswith("_" + target)]
    if len(hits) != 1:
        raise InputError(f"target '{target}' matches {len(hits)} of the columns {columns} (need exactly one)")
    return hits[0]


def time_features(index: pd.DatetimeIndex) -> np.ndarray:
    """The reference code's ``timeF`` marks for its default ``freq='h'``, each in [-0.5, 0.5]:
    hour of day, day of week, day of month, day of year. ``[T, 4]`` float32."""
    index = pd.DatetimeIndex(index)
    feats = [
        index.hour / 23.0 - 0.5,
        index.dayofweek / 6.0 - 0.5,
        (index.day - 1) / 30.0 - 0.5,
        (index.dayofyear - 1) / 365.0 - 0.5,
    ]
    return np.stack([np.asarray(f, dtype=np.float32) for f in feats], axis=1)


@dataclass
class LTSFData:
    """A dataset prepared for the protocol: normalised values, the statistics and the splits."""

    name: str
    columns: list[str]
    values: np.ndarray  # [T, C] float32, z-normalised with training statistics
    marks: np.ndarray  # [T, 4] float32 time features
    mean: np.ndarray  # [C] training mean
    std: np.ndarray  # [C] training population std
    segments: dict[Split, tuple[int, int]]
    index: pd.DatetimeIndex | None = None  # the rows' timestamps
    freq_id: int = 0  # TTM's resolution token of the rows' frequency (0: unknown)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, split: str, name: str = "data") -> LTSFData:
        raw = frame.to_numpy(dtype=np.float64)
        segs = segments(split, len(raw))
        train = raw[segs["train"][0] : segs["train"][1]]
        mean, std = train.mean(axis=0), train.std(axis=0)  # population std, as sklearn's StandardScaler
        std = np.where(std > 0, std, 1.0)
        values = ((raw - mean) / std).astype(np.float32)
        index = frame.index if isinstance(frame.index, pd.DatetimeIndex) else pd.date_range(
            "2000-01-01", periods=len(frame), freq="h")
        from tsfm.data.freq import freq_token

        index = pd.DatetimeIndex(index)
        freq = pd.infer_freq(index[: min(len(index), 200)]) if len(index) >= 3 else None
        return cls(name, [str(c) for c in frame.columns], values, time_features(index), mean, std, segs,
                   index, freq_token(freq))

    @classmethod
    def load(cls, name: str, data_dir: str | Path, target: str | None = None) -> LTSFData:
        """One benchmark dataset, all channels (multivariate, ``features='M'``) or, with ``target``,
        that channel alone (the univariate setting, ``features='S'``: e.g. ``target="OT"``)."""
        if name not in DATASETS:
            raise InputError(f"unknown LTSF dataset '{name}'; choose one of {', '.join(DATASETS)}")
        spec = DATASETS[name]
        frame = read_wide(Path(data_dir) / spec.file)
        if target is not None:
            frame = frame[[select_column(list(frame.columns), target)]]
        return cls.from_frame(frame, spec.split, name=name)

    def windows(self, split: Split, lookback: int, horizon: int, stride: int = 1) -> LTSFWindows:
        borders = window_borders(self.segments[split], lookback, split)
        return LTSFWindows(self.values, self.marks, borders, lookback, horizon, stride, self.freq_id)


class LTSFWindows(Dataset):
    """Sliding windows of a split: ``past_values [L, C]``, ``future_values [H, C]``, ``past_exog [L, 4]``
    and ``freq_id`` (TTM's resolution token; families without one ignore it)."""

    def __init__(self, values: np.ndarray, marks: np.ndarray, borders: tuple[int, int], lookback: int,
                 horizon: int, stride: int = 1, freq_id: int = 0) -> None:
        if stride < 1:
            raise InputError(f"stride must be >= 1, got {stride}")
        self.values = torch.from_numpy(np.ascontiguousarray(values))
        self.marks = torch.from_numpy(np.ascontiguousarray(marks))
        self.borders, self.lookback, self.horizon, self.stride = borders, lookback, horizon, stride
        self.freq_id = torch.tensor(freq_id, dtype=torch.long)
        count = num_windows(borders, lookback, horizon)
        self.starts = np.arange(borders[0], borders[0] + count, stride)
        if not len(self.starts):
            raise InputError(f"rows {borders} hold no window of lookback {lookback} and horizon {horizon}")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        mid, end = s + self.lookback, s + self.lookback + self.horizon
        return {
            "past_values": self.values[s:mid],
            "future_values": self.values[mid:end],
            "past_exog": self.marks[s:mid],
            "freq_id": self.freq_id,
        }


def mse_mae(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean squared and mean absolute error over every element (windows x steps x channels)."""
    diff = torch.as_tensor(pred, dtype=torch.float64) - torch.as_tensor(target, dtype=torch.float64)
    return float((diff**2).mean()), float(diff.abs().mean())
