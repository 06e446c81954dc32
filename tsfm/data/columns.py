"""Column roles of a user table (layout detection: long or wide) and numeric target/exog columns.

Layout detection follows research/ecosystem.md §1.10 (flags always win):

1. ``id_col`` given, or an id alias and a time alias (or ``time_col``) in the header -> long.
2. else exactly one time column: if its stamps repeat, long, with the one other column that makes
   (id, time) unique as the id (``store, date, sales``); else, every other column numeric -> wide
   (one series per column).
3. else -> error naming the flags.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from tsfm.data.messages import RowSource, quoted_names
from tsfm.data.timestamps import NoSuchPeriod, period_notation
from tsfm.errors import InputError

ID_ALIASES: tuple[str, ...] = ("unique_id", "item_id", "series_id", "id")
TIME_ALIASES: tuple[str, ...] = ("ds", "timestamp", "date", "datetime", "time")
TARGET_ALIASES: tuple[str, ...] = ("y", "target", "value")


@dataclass
class ColumnRoles:
    layout: str
    id_col: str | None
    time_col: str
    targets: list[str]



def find_alias(columns: Sequence[str], aliases: Sequence[str], exclude: Sequence[str] = ()) -> str | None:
    """First column matching an alias (case-insensitive), aliases in priority order."""
    lower = {}
    for c in columns:
        if c not in exclude:
            lower.setdefault(c.lower(), c)
    for a in aliases:
        if a in lower:
            return lower[a]
    return None


def _is_numeric_like(col: pd.Series) -> bool:
    """Numeric dtype, or text of which most values parse as numbers (so typos get named later)."""
    if ptypes.is_bool_dtype(col) or ptypes.is_numeric_dtype(col):
        return True
    if ptypes.is_datetime64_any_dtype(col):
        return False
    sample = col.dropna().head(1000)
    if sample.empty:
        return True  # an all-empty column is a (bad) series, not a label
    return pd.to_numeric(sample, errors="coerce").notna().mean() >= 0.5


def _is_time_like(col: pd.Series) -> bool:
    if ptypes.is_datetime64_any_dtype(col):
        return True
    if _is_numeric_like(col):
        return False
    sample = col.dropna().head(50)
    if sample.empty:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(sample.astype(str), errors="coerce", format="mixed")
        except (ValueError, TypeError):
            return False
    if parsed.notna().all():
        return True
    try:
        return period_notation(sample) is not None
    except NoSuchPeriod:  # a time column with a bad period: reading it says which
        return True


# names that say a numeric column is (part of) a time, not a series
_TIME_PARTS = ("year", "quarter", "month", "week", "day", "hour", "minute", "period", "t", "step", "index")


def values_only(df: pd.DataFrame) -> bool:
    """A table of numbers alone, whose rows are consecutive steps: every column numeric, none named
    like an id, a time or a part of one, none evenly spaced, and no column of whole numbers that
    could be a time or a code under another name (rising or falling throughout, or repeating half
    its values)."""
    names = [str(c).strip().lower() for c in df.columns]
    if any(n in ID_ALIASES or n in TIME_ALIASES or n in _TIME_PARTS for n in names):
        return False
    if not all(_is_numeric_like(df[c]) for c in df.columns):
        return False
    if len(df.columns) == 1:  # a lone column is the series whatever it holds (a ramp, whole numbers)
        return True
    for c in df.columns:
        x = pd.to_numeric(df[c], errors="coerce").dropna().to_numpy(dtype=np.float64)
        if len(x) < 3:
            continue
        steps = np.diff(x)
        if np.allclose(steps, steps[0], rtol=1e-6, atol=0) and steps[0] != 0:  # evenly spaced: decimal years...
            return False
        whole = (x % 1 == 0).all()
        if whole and ((steps > 0).all() or (steps < 0).all() or len(np.unique(x)) <= len(x) / 2):
            return False
    return True


def resolve_roles(
    df: pd.DataFrame,
    id_col: str | None,
    time_col: str | None,
    targets: list[str],
    past: list[str],
    future: list[str],
) -> ColumnRoles:
    cols = list(df.columns)
    exog = past + future
    named = [c for c in (id_col, time_col, *targets, *exog) if c is not None]
    missing = list(dict.fromkeys(c for c in named if c not in cols))
    if missing:
        what = "column" if len(missing) == 1 else "columns"
        raise InputError(f"{what} {quoted_names(missing)} not found; available columns: {', '.join(cols)}")
    _check_overlaps(id_col, time_col, targets, past, future)

    id_alias = find_alias(cols, ID_ALIASES, exog)
    time_alias = time_col or find_alias(cols, TIME_ALIASES, [*exog, *targets, id_col or ""])
    if id_col or (id_alias and time_alias):
        idc = id_col or id_alias
        others = [idc, *exog, *targets]
        tc = time_col or find_alias(cols, TIME_ALIASES, others) or _only_time_column(df, others)
        return ColumnRoles("long", idc, tc, targets or _long_target(df, [idc, tc, *exog]))

    if time_col:
        candidates = [time_col]
    else:
        others = [c for c in cols if c not in exog and c not in targets]
        candidates = [c for c in others if c.lower() in TIME_ALIASES or _is_time_like(df[c])]
    if len(candidates) == 1:
        tc = candidates[0]
        if df[tc].duplicated().mean() >= 0.5:  # times repeat as in 2+ series: long (a wide table's stray duplicate
            # is named later)
            idc = _id_telling_series_apart(df, tc, [*exog, *targets])
            if idc is None:
                raise InputError(f"the time column '{tc}' repeats, so the table is long, but no single column tells "
                                 "its series apart: pass --id-col / id_col=")
            return ColumnRoles("long", idc, tc, targets or _long_target(df, [idc, tc, *exog]))
        series_cols = targets or [c for c in cols if c != tc and c not in exog and not _row_labels(c, df[c])]
        if series_cols and (targets or all(_is_numeric_like(df[c]) for c in series_cols)):
            return ColumnRoles("wide", None, tc, series_cols)
    raise InputError("cannot tell long from wide format: pass --id-col/--time-col/--target "
                     "(Python: id_col=, time_col=, target=)")


def _check_overlaps(
    id_col: str | None, time_col: str | None, targets: list[str], past: list[str], future: list[str]
) -> None:
    roles = {"id": [id_col] if id_col else [], "time": [time_col] if time_col else [],
             "target": targets, "past exog": past, "future exog": future}
    seen: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if seen.get(name, role) != role:
                raise InputError(f"column '{name}' is named as both {seen[name]} and {role}; give each column one role")
            seen[name] = role


def _id_telling_series_apart(df: pd.DataFrame, tc: str, exclude: list[str]) -> str | None:
    """The id column of a long table without an id alias (``store, date, sales``): the one other column
    of text or whole numbers, not named like a part of a time, that makes (it, time) unique and repeats
    as an id does (at most half as many values as rows); None when no column or several do."""
    found = [c for c in df.columns if c != tc and c not in exclude and str(c).strip().lower() not in _TIME_PARTS
             and _labels(df[c]) and df[c].nunique() <= len(df) / 2 and not df.duplicated([c, tc]).any()]
    return found[0] if len(found) == 1 else None


_ROW_LABEL_NAMES = re.compile(r"^(Unnamed: \d+|level_\d+|index)$")  # to_csv's empty header; reset_index's names


def _row_labels(name: str, col: pd.Series) -> bool:
    """Distinct whole numbers under a row-label name: the index ``DataFrame.to_csv`` writes by default,
    or the labels a filtered frame keeps; never a series to forecast."""
    return bool(_ROW_LABEL_NAMES.match(str(name))) and ptypes.is_integer_dtype(col) and col.is_unique


def _labels(col: pd.Series) -> bool:
    """Text or whole numbers: what an id column holds (measurements with fractions are values)."""
    if ptypes.is_bool_dtype(col) or not ptypes.is_numeric_dtype(col):
        return True
    values = col.dropna().to_numpy(dtype=np.float64)
    return bool((values % 1 == 0).all())


def _only_time_column(df: pd.DataFrame, exclude: list[str]) -> str:
    found = [c for c in df.columns if c not in exclude and _is_time_like(df[c])]
    if len(found) != 1:
        raise InputError(f"cannot find the time column: pass --time-col / time_col= (columns: {', '.join(df.columns)})")
    return found[0]


def _long_target(df: pd.DataFrame, exclude: list[str]) -> list[str]:
    alias = find_alias(list(df.columns), TARGET_ALIASES, exclude)
    if alias:
        return [alias]
    numeric = [c for c in df.columns if c not in exclude and _is_numeric_like(df[c])]
    if len(numeric) == 1:
        return numeric
    if not numeric:
        raise InputError(f"no numeric column to forecast: pass --target / target= (columns: {', '.join(df.columns)})")
    raise InputError(f"cannot tell which column is the target: pass --target / target= "
                     f"(numeric columns: {', '.join(numeric)})")


def column_floats(col: pd.Series, name: str, role: str, src: RowSource) -> np.ndarray:
    """float64 values of a target/exog column; text that is not a number is an error."""
    if ptypes.is_bool_dtype(col) or ptypes.is_numeric_dtype(col):
        out = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        num = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(num.isna().to_numpy() & col.notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            hint = "pick the target with --target" if role == "target" else "fix or drop the column"
            raise InputError(
                f"{role} column '{name}' is not numeric: {src.at(i)} has {col.iloc[i]!r}; fix the value or {hint}"
            )
        out = num.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.flatnonzero(np.isinf(out))
    if inf.size:
        raise InputError(f"{role} column '{name}' has an infinite value at {src.at(int(inf[0]))}; replace or remove it")
    return out
