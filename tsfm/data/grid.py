"""Stamps on a frequency's grid: per-row calendar features, per-series segments, grid positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tsfm.data.timestamps import DAY_NS


@dataclass(frozen=True)
class Grid:
    """How to place stamps on an offset's grid: fixed steps (ns), month steps, business days."""

    kind: str  # "tick" | "month" | "monthend" | "bday" | "other"
    step: int
    offset: pd.DateOffset


_MONTH_KINDS = {
    "MonthBegin": ("month", 1), "MonthEnd": ("monthend", 1),
    "QuarterBegin": ("month", 3), "QuarterEnd": ("monthend", 3),
    "YearBegin": ("month", 12), "YearEnd": ("monthend", 12),
}


def grid_of(offset: pd.DateOffset) -> Grid:
    name = type(offset).__name__
    if name == "Week":
        return Grid("tick", 7 * offset.n * DAY_NS, offset)
    if isinstance(offset, pd.offsets.Tick):
        return Grid("tick", int(offset.nanos), offset)
    if name in _MONTH_KINDS:
        kind, months = _MONTH_KINDS[name]
        return Grid(kind, months * offset.n, offset)
    if name == "BusinessDay" and not offset.offset:
        return Grid("bday", offset.n, offset)
    return Grid("other", 0, offset)


class Calendar:
    """Per-row calendar features of int64-ns stamps, computed once with numpy."""

    def __init__(self, t: np.ndarray) -> None:
        self.t = t
        self.days = t // DAY_NS
        self.tod = t - self.days * DAY_NS
        # series usually share dates: compute the calendar once per distinct day
        uniq, inv = np.unique(self.days, return_inverse=True)
        d64 = uniq.astype("datetime64[D]")
        months = d64.astype("datetime64[M]")
        self.months = months.astype(np.int64)[inv]
        self.month_start = (months.astype("datetime64[D]") == d64)[inv]
        self.month_end = ((d64 + 1).astype("datetime64[M]") != months)[inv]
        self.weekday = (self.days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        origin = d64[0] if len(uniq) else np.datetime64("1970-01-05")
        self.bdays = np.busday_count(origin, d64).astype(np.int64)[inv]


@dataclass
class Segments:
    """Contiguous runs of rows per series in the sorted arrays."""

    first: np.ndarray  # [K] index of each series' first row
    counts: np.ndarray  # [K]

    @property
    def last(self) -> np.ndarray:
        return self.first + self.counts - 1

    def of_rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.first)), self.counts)

    def gcd(self, x: np.ndarray) -> np.ndarray:
        """gcd of consecutive differences of ``x`` within each series (0 for one-row series)."""
        d = np.zeros(len(x), dtype=np.int64)
        d[:-1] = np.abs(np.diff(x))
        d[self.last] = 0
        return np.gcd.reduceat(d, self.first)

    def all(self, flag: np.ndarray) -> np.ndarray:
        return np.logical_and.reduceat(flag, self.first)

    def constant(self, x: np.ndarray) -> np.ndarray:
        return np.minimum.reduceat(x, self.first) == np.maximum.reduceat(x, self.first)


def grid_positions(grid: Grid, cal: Calendar, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Grid position of every row relative to its series' first stamp, and whether it is on the grid."""
    row_seg = seg.of_rows()
    a = seg.first[row_seg]
    if grid.kind == "tick":
        rel = cal.t - cal.t[a]
        ok = rel % grid.step == 0
    elif grid.kind in ("month", "monthend"):
        flag = cal.month_start if grid.kind == "month" else cal.month_end
        rel = cal.months - cal.months[a]
        ok = flag & (cal.tod == cal.tod[a]) & (rel % grid.step == 0)
    elif grid.kind == "bday":
        rel = cal.bdays - cal.bdays[a]
        ok = (cal.weekday < 5) & (cal.tod == cal.tod[a]) & (rel % grid.step == 0)
    else:
        return _positions_by_range(grid.offset, cal.t, seg)
    pos = rel // grid.step
    if not isinstance(grid.offset, pd.offsets.Tick):  # anchored offsets: the first stamp must be on it
        on = _starts_on_offset(grid.offset, cal.t[seg.first])
        ok &= on[row_seg]
    return pos, ok


def _starts_on_offset(offset: pd.DateOffset, starts: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(starts, return_inverse=True)
    on = np.array([offset.is_on_offset(pd.Timestamp(int(s))) for s in uniq], dtype=bool)
    return on[inv]


def _positions_by_range(offset: pd.DateOffset, t: np.ndarray, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Fallback for offsets without a closed form (BMS, SMS, ...): one date_range per series."""
    pos = np.zeros(len(t), dtype=np.int64)
    ok = np.zeros(len(t), dtype=bool)
    for s, n in zip(seg.first, seg.counts):
        stamps = t[s : s + n]
        grid = pd.date_range(pd.Timestamp(int(stamps[0])), pd.Timestamp(int(stamps[-1])), freq=offset).asi8
        if len(grid) == 0 or grid[0] != stamps[0]:  # the first stamp is not on the offset
            continue
        idx = np.minimum(np.searchsorted(grid, stamps), len(grid) - 1)
        ok[s : s + n] = grid[idx] == stamps
        pos[s : s + n] = idx
    return pos, ok
