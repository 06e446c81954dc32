"""Parsing time columns into int64 nanoseconds: dates, zones, day-first text, years, integer steps.

Tz-aware stamps of daily or coarser data are kept in the zone's wall-clock time (so a daily
series stays daily across a DST change), finer ones in UTC. An integer time column outside the
year range 1678-2261 is a plain step index.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from tsfm.data.messages import RowSource
from tsfm.errors import InputError

DAY_NS = 86_400 * 10**9


def parse_times(col: pd.Series, name: str, src: RowSource) -> tuple[np.ndarray, str | None]:
    """int64 nanoseconds of a time column (UTC when tz-aware) and the tz name (or None)."""
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_numeric_dtype(col):
        _no_missing_times(col, name, src)
    if ptypes.is_datetime64_any_dtype(col):
        _within_nanoseconds(col, name, src)
        ts = pd.Series(col)
    elif ptypes.is_numeric_dtype(col) or ptypes.is_bool_dtype(col):
        ts = _parse_years(col, name)
    else:
        ts = _parse_text_times(col, name, src)[0]
    tz = None
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC")
        tz = "UTC"
    ns = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]") if tz else ts.to_numpy(dtype="datetime64[ns]")
    return ns.astype(np.int64), tz


@dataclass
class ParsedTimes:
    """A parsed time column: int64 ns (wall clock or UTC, naive), the user's zone, and what they are."""

    ns: np.ndarray
    tz: Any = None  # a zone name, a tzinfo, or None for naive stamps
    wall: bool = True  # ns are wall-clock times of tz (daily and coarser data); else UTC
    steps: bool = False  # an integer step index, not dates
    slash_dates: bool = False  # text like 03/04/2020, read month-first (a hint if the grid fails)
    int_dates: str | None = None  # integers that were dates, as strftime writes them back ("%Y", "%Y%m%d")


_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")  # the year of 1500-01-01 or 01/01/1500
FIRST_YEAR, LAST_YEAR = 1678, 2261  # the whole years int64 nanoseconds hold
_OFFSET_SUFFIX = re.compile(r"\s*(Z|[+-]\d{2}:?\d{2})$")
# dd/mm/yyyy, mm/dd/yyyy, dd.mm.yyyy, dd-mm-yyyy: the first two fields' order is read from the data,
# except for dots, which are always day-first (nobody writes mm.dd.yyyy)
_SLASH_DATE = re.compile(r"^\s*(\d{1,2})([/.-])(\d{1,2})\2(\d{4})(\s|T|$)")


def parse_stamps(col: pd.Series, name: str, src: RowSource) -> ParsedTimes:
    """Parse a time column for the grid: zones kept (wall clock for calendar data), integer steps, day-first dates."""
    if name == src.step_col:
        return ParsedTimes(col.to_numpy().astype(np.int64), steps=True)
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_numeric_dtype(col):
        _no_missing_times(col, name, src)
    if (ptypes.is_numeric_dtype(col) or ptypes.is_bool_dtype(col)) and not ptypes.is_datetime64_any_dtype(col):
        vals = col.to_numpy()
        if ptypes.is_bool_dtype(col) or not bool(np.all(np.mod(vals, 1) == 0)):
            decimal = None if ptypes.is_bool_dtype(col) else _decimal_years(vals.astype(np.float64))
            if decimal is not None:
                return ParsedTimes(decimal.to_numpy(dtype="datetime64[ns]").astype(np.int64))
            _parse_years(col, name)  # raises: numbers that are neither years nor integer steps
        ints = vals.astype(np.int64)
        if ints.min() >= FIRST_YEAR and ints.max() <= LAST_YEAR:
            return ParsedTimes(_parse_years(col, name).to_numpy(dtype="datetime64[ns]").astype(np.int64),
                               int_dates="%Y")
        compact = _compact_dates(ints)
        if compact is not None:
            return ParsedTimes(compact[0], int_dates=compact[1])
        return ParsedTimes(ints, steps=True)
    if ptypes.is_datetime64_any_dtype(col):
        _within_nanoseconds(col, name, src)
        ts = pd.Series(col)
    else:
        ts, dayfirst = _parse_text_times(col, name, src)
        if not dayfirst and _slash_dates(col):
            return replace(_zoned(ts, col), slash_dates=True)
    return _zoned(ts, None if ptypes.is_datetime64_any_dtype(col) else col)


def _slash_dates(text: pd.Series) -> bool:
    sample = text.head(200).dropna().astype(str).head(20)
    return bool(len(sample)) and bool(sample.str.match(_SLASH_DATE).all())


def _zoned(ts: pd.Series, text: pd.Series | None) -> ParsedTimes:
    """Naive int64 ns of parsed stamps: wall clock when every stamp has the same time of day
    (daily or coarser data, which DST must not make irregular), else UTC (no repeated hour)."""
    tz = getattr(ts.dt, "tz", None)
    if tz is None:
        return ParsedTimes(ts.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    utc = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    wall = ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    mixed = False
    if text is not None and str(tz) == "UTC":  # text with several UTC offsets (across DST) is read as UTC
        stripped = pd.to_datetime(text.astype(str).str.replace(_OFFSET_SUFFIX, "", regex=True), errors="coerce",
                                  format="mixed")
        if stripped.notna().all():
            local = stripped.to_numpy(dtype="datetime64[ns]").astype(np.int64)
            if (local != utc).any():
                wall, mixed = local, True
    if len(np.unique(wall % DAY_NS)) == 1:  # daily or coarser: the grid lives in wall-clock time
        if mixed:  # the zone itself is unknown: future stamps get the latest stamp's offset
            tz = _dt.timezone(_dt.timedelta(seconds=int((wall - utc)[np.argmax(utc)]) // 10**9))
        return ParsedTimes(wall, tz=tz, wall=True)
    return ParsedTimes(utc, tz=tz, wall=False)  # mixed offsets: tz is UTC, the one zone known to be right


def _within_nanoseconds(col: pd.Series, name: str, src: RowSource) -> None:
    """Stamps of a coarser unit (``datetime64[s]``) may lie outside what int64 nanoseconds hold;
    converted, they would wrap around silently."""
    stamps = pd.Series(col)
    naive = stamps.dt.tz_convert("UTC").dt.tz_localize(None) if stamps.dt.tz is not None else stamps
    outside = np.flatnonzero(((naive < pd.Timestamp.min) | (naive > pd.Timestamp.max)).to_numpy())
    if outside.size:
        raise InputError(
            f"timestamp {str(col.iloc[outside[0]])!r} in column '{name}' at {src.at(int(outside[0]))} is outside the "
            f"dates pandas can hold ({FIRST_YEAR}-{LAST_YEAR}); number the rows instead (integer steps, such as the "
            "years 1500, 1501, ...)"
        )


def _no_missing_times(col: pd.Series, name: str, src: RowSource) -> None:
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        raise InputError(f"missing timestamp in column '{name}' at {src.at(int(missing[0]))}; fill or drop that row")


def _decimal_years(vals: np.ndarray) -> pd.Series | None:
    """R's ``time()`` of a monthly or quarterly ``ts`` (year + (month - 1) / 12, written with a few
    decimals) as month or quarter starts; None for other numbers."""
    if not np.isfinite(vals).all() or vals.min() < FIRST_YEAR or vals.max() >= LAST_YEAR + 1:
        return None
    for per_year in (4, 12):  # quarters first: they lie on the monthly grid too
        periods = vals * per_year
        if np.all(np.abs(periods - np.round(periods)) < 0.01):
            year, part = np.divmod(np.round(periods).astype(np.int64), per_year)
            return pd.Series(pd.to_datetime(pd.DataFrame({"year": year, "month": part * (12 // per_year) + 1,
                                                          "day": 1})))
    return None


def _compact_dates(ints: np.ndarray) -> tuple[np.ndarray, str] | None:
    """(int64 nanoseconds, strftime format) of integers that are all dates written yyyymmdd (20230131)
    or yyyymm (202301, crossing a year: within one, 202401..202410 may as well be ISO weeks); None
    otherwise. Read as steps, such dates would leave most of their grid empty (20230131 is followed
    by 20230201); a run of steps that all read as dates is a run of dates."""
    for digits, fmt in ((8, "%Y%m%d"), (6, "%Y%m")):
        low, high = FIRST_YEAR * 10 ** (digits - 4), (LAST_YEAR + 1) * 10 ** (digits - 4)
        if digits == 6 and (np.diff(np.unique(ints)) == 1).all():  # no year crossed: 202401..202410 may be weeks
            return None
        if ints.min() >= low and ints.max() < high:
            stamps = pd.to_datetime(pd.Series(ints.astype(str)), format=fmt, errors="coerce")
            if stamps.notna().all():
                return stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64), fmt
            return None
    return None


def _parse_years(col: pd.Series, name: str) -> pd.Series:
    vals = col.to_numpy()
    integral = ptypes.is_integer_dtype(col) or bool(np.all(np.mod(vals, 1) == 0))
    if integral and vals.min() >= FIRST_YEAR and vals.max() <= LAST_YEAR:
        return pd.Series(pd.to_datetime(vals.astype(np.int64).astype(str), format="%Y"))
    raise InputError(
        f"time column '{name}' holds numbers that are neither years, decimal years of months or quarters (R's "
        f"time()), nor integer steps (first value {vals[0]!r}); write dates like 2020-01-31 or integer steps 1, 2, 3"
    )


# period notations pandas does not parse: R's tsibble (2000 Q1, 2000 W05), statistical offices
# (2000M01, 2000-W05), and a period written as its range (pandas' weekly periods: start/end)
_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*Q([1-4])\s*$", re.IGNORECASE)
_MONTH = re.compile(r"^\s*(\d{4})\s*-?\s*M(\d{1,2})\s*$", re.IGNORECASE)
_WEEK = re.compile(r"^\s*(\d{4})\s*-?\s*W(\d{1,2})\s*$", re.IGNORECASE)
_RANGE = re.compile(r"^\s*([^/]+?)\s*/\s*[^/]+$")


class NoSuchPeriod(ValueError):
    """A period notation naming a period that does not exist (month 13, week 54) at ``position``."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


def period_notation(text: pd.Series) -> pd.Series | None:
    """Stamps written as periods, each read as its start (a week from its ISO Monday); None when
    the column is not one notation throughout, ``NoSuchPeriod`` when one of them does not exist."""
    strings = text.astype(str)
    for pattern, start in ((_QUARTER, lambda y, n: f"{y}-{3 * n - 2:02d}-01"), (_MONTH, lambda y, n: f"{y}-{n:02d}-01"),
                           (_WEEK, lambda y, n: pd.Timestamp.fromisocalendar(y, n, 1).strftime("%Y-%m-%d"))):
        parts = strings.str.extract(pattern)
        if parts[0].notna().all():
            starts = []
            for position, (year, number) in enumerate(zip(parts[0], parts[1])):
                try:
                    starts.append(start(int(year), int(number)))
                except ValueError:  # week 54 (fromisocalendar)
                    raise NoSuchPeriod(position) from None
            stamps = pd.to_datetime(pd.Series(starts, index=text.index), format="%Y-%m-%d", errors="coerce")
            if stamps.isna().any():  # month 13
                raise NoSuchPeriod(int(np.flatnonzero(stamps.isna().to_numpy())[0]))
            return stamps
    first = strings.str.extract(_RANGE)[0]
    if first.notna().all():
        try:
            stamps = pd.to_datetime(first, format="ISO8601", errors="coerce")
        except (ValueError, TypeError):  # mixed UTC offsets
            return None
        return stamps if ptypes.is_datetime64_any_dtype(stamps) and stamps.notna().all() else None
    return None


def _parse_text_times(text: pd.Series, name: str, src: RowSource) -> tuple[pd.Series, bool]:
    """ISO first (fast); then period notations (:func:`period_notation`); then pandas' format
    inference; then element-wise parsing.

    Returns the stamps and whether they were read day-first: dd.mm.yyyy text always, and dd/mm/yyyy
    or dd-mm-yyyy text with a first field above 12 somewhere (and no second field above 12), which
    is unambiguous.
    """
    ts = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = text.astype(str).str.extract(_SLASH_DATE) if _slash_dates(text) else None
        if parts is not None and parts[0].notna().all() and parts[1].nunique() == 1:
            first, second = parts[0].astype(int), parts[2].astype(int)
            if parts[1].iloc[0] == "." or ((first > 12).any() and (second <= 12).all()):
                ts = pd.to_datetime(text, format="mixed", dayfirst=True, errors="coerce")
                if ts.notna().all():
                    return ts, True
        for fmt in ("ISO8601", None, "mixed"):
            if fmt is None:  # periods before pandas' guessing, which reads 2000-01-03/2000-01-09 as a time of day
                try:
                    periods = period_notation(text)
                except NoSuchPeriod as bad:
                    raise InputError(f"period {text.iloc[bad.position]!r} in column '{name}' at "
                                     f"{src.at(bad.position)} does not exist (months 1-12, quarters 1-4, the "
                                     "ISO weeks of that year)") from None
                if periods is not None:
                    return periods, False
            try:
                ts = pd.to_datetime(text, format=fmt, errors="coerce")
                if ts.dtype == object:  # mixed UTC offsets (e.g. across DST): compare in UTC
                    ts = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
            except (ValueError, TypeError, OverflowError):
                try:
                    ts = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
                except (ValueError, TypeError, OverflowError):
                    continue
            if ts.notna().all():
                return ts, False
    _no_missing_times(text, name, src)
    bad = int(np.flatnonzero(ts.isna().to_numpy())[0]) if ts is not None else 0
    year = _YEAR.search(str(text.iloc[bad]))
    if year and not FIRST_YEAR <= int(year.group(1)) <= LAST_YEAR:
        raise InputError(
            f"timestamp {text.iloc[bad]!r} in column '{name}' at {src.at(bad)} is outside the dates pandas can hold "
            f"({FIRST_YEAR}-{LAST_YEAR}); number the rows instead (integer steps, such as the years 1500, 1501, ...)"
        )
    raise InputError(
        f"cannot parse timestamp {text.iloc[bad]!r} in column '{name}' at {src.at(bad)}; "
        "use ISO dates like 2020-01-31 or 2020-01-31 13:00"
    )
