"""A user table as rows in long form (series code, time, values, covariates), before the grid.

Long tables give one row per (id, time); wide tables one row per observed (column, time);
``multivariate=True`` gathers the series as the channels of one item.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data.columns import ColumnRoles, column_floats
from tsfm.data.messages import RowSource
from tsfm.data.timestamps import parse_stamps
from tsfm.errors import InputError

MULTIVARIATE_ID = "series"  # the one item of a wide/long frame read with multivariate=True


@dataclass
class Rows:
    ids: list[str]  # series ids, codes index into it
    codes: np.ndarray  # [n] int64
    times: np.ndarray  # [n] int64 ns
    values: np.ndarray  # [n, C] float64
    past: np.ndarray  # [n, Ep] float64
    future: np.ndarray  # [n, Ef] float64
    rows: np.ndarray  # [n] source row positions (for messages)
    target_names: list[str]
    tz: Any = None
    empty_ids: list[str] = field(default_factory=list)  # wide columns with no value at all
    channels_are_series: bool = False  # the channels are input series (multivariate=True)
    wall: bool = True  # see ParsedTimes
    steps: bool = False
    slash_dates: bool = False
    int_dates: str | None = None  # see ParsedTimes

    def take(self, keep: np.ndarray) -> Rows:
        return replace(
            self,
            codes=self.codes[keep],
            times=self.times[keep],
            values=self.values[keep],
            past=self.past[keep],
            future=self.future[keep],
            rows=self.rows[keep],
        )


def _exog_matrix(df: pd.DataFrame, names: list[str], src: RowSource) -> np.ndarray:
    if not names:
        return np.zeros((len(df), 0))
    return np.column_stack([column_floats(df[c], c, "exog", src) for c in names])


def long_rows(df: pd.DataFrame, roles: ColumnRoles, past: list[str], future: list[str], src: RowSource) -> Rows:
    values = np.column_stack([column_floats(df[c], c, "target", src) for c in roles.targets])
    past_x, future_x = _exog_matrix(df, past, src), _exog_matrix(df, future, src)
    codes, uniques = pd.factorize(df[roles.id_col], sort=False)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise InputError(f"missing id in column '{roles.id_col}' at {src.at(int(missing[0]))}; fill or drop that row")
    parsed = parse_stamps(df[roles.time_col], roles.time_col, src)
    times = parsed.ns
    ids = [str(u) for u in uniques]
    if len(set(ids)) < len(ids):  # e.g. 1 and "1" in one object column
        codes, uniques = pd.factorize(np.array(ids, dtype=object)[codes], sort=False)
        ids = [str(u) for u in uniques]
    return Rows(
        ids=ids,
        codes=codes.astype(np.int64),
        times=times,
        values=values,
        past=past_x,
        future=future_x,
        rows=np.arange(len(df)),
        target_names=list(roles.targets),
        tz=parsed.tz, wall=parsed.wall, steps=parsed.steps, slash_dates=parsed.slash_dates, int_dates=parsed.int_dates,
    )


def wide_rows(
    df: pd.DataFrame, roles: ColumnRoles, past: list[str], future: list[str], multivariate: bool, src: RowSource
) -> Rows:
    values = np.column_stack([column_floats(df[c], c, "target", src) for c in roles.targets])
    past_x, future_x = _exog_matrix(df, past, src), _exog_matrix(df, future, src)
    parsed = parse_stamps(df[roles.time_col], roles.time_col, src)
    times = parsed.ns
    zone = dict(tz=parsed.tz, wall=parsed.wall, steps=parsed.steps, slash_dates=parsed.slash_dates,
                int_dates=parsed.int_dates)
    observed = ~np.isnan(values)
    if multivariate:  # one item; its span runs from the first to the last row with any value
        keep = observed.any(axis=1)
        n = int(keep.sum())
        return Rows(
            ids=[MULTIVARIATE_ID], codes=np.zeros(n, np.int64), times=times[keep], values=values[keep],
            past=past_x[keep], future=future_x[keep], rows=np.flatnonzero(keep),
            target_names=list(roles.targets), channels_are_series=True, **zone,
        )
    # one series per column, spanning that column's own first..last value
    present = observed.any(axis=0)
    cols = np.flatnonzero(present)
    code_of = np.full(len(roles.targets), -1)
    code_of[cols] = np.arange(len(cols))
    col_idx, row_idx = np.nonzero(observed.T)  # column-major: grouped by series, rows in order
    return Rows(
        ids=[roles.targets[c] for c in cols],
        codes=code_of[col_idx].astype(np.int64),
        times=times[row_idx],
        values=values[row_idx, col_idx][:, None],
        past=past_x[row_idx],
        future=future_x[row_idx],
        rows=row_idx,
        target_names=["y"],
        empty_ids=[roles.targets[c] for c in np.flatnonzero(~present)],
        **zone,
    )


def ids_to_channels(rows: Rows) -> Rows:
    """Gather the ids of a one-target long frame as the channels of one item (union of stamps).

    Exog values are per time step; where ids disagree the first observed value wins.
    """
    stamps, inv = np.unique(rows.times, return_inverse=True)
    values = np.full((len(stamps), len(rows.ids)), np.nan)
    values[inv, rows.codes] = rows.values[:, 0]

    def first(x: np.ndarray) -> np.ndarray:
        if x.shape[1] == 0:
            return np.zeros((len(stamps), 0))
        return pd.DataFrame(x).groupby(inv, sort=True).first().reindex(range(len(stamps))).to_numpy(np.float64)

    src_rows = pd.Series(rows.rows).groupby(inv, sort=True).min().to_numpy()
    return Rows(
        ids=[MULTIVARIATE_ID], codes=np.zeros(len(stamps), np.int64), times=stamps, values=values,
        past=first(rows.past), future=first(rows.future), rows=src_rows,
        target_names=list(rows.ids), tz=rows.tz, channels_are_series=True,
        wall=rows.wall, steps=rows.steps, slash_dates=rows.slash_dates, int_dates=rows.int_dates,
    )


def sort_rows(rows: Rows) -> Rows:
    """Rows grouped by series (first-appearance order), by time within each (skipped if already so)."""
    dc, dt = np.diff(rows.codes), np.diff(rows.times)
    if ((dc == 1) | ((dc == 0) & (dt > 0))).all() and (len(rows.codes) == 0 or rows.codes[0] == 0):
        return rows
    return rows.take(np.lexsort((rows.times, rows.codes)))
