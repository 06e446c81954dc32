"""User frames in, regular-grid arrays out, forecast frames back.

This is the input boundary of ``tsfm forecast`` and ``Forecaster``: every problem a user can fix
(missing columns, text in the target, bad or duplicate timestamps, no inferable frequency, too
short or empty series, unreadable files) becomes one :class:`~tsfm.errors.InputError` line that
names the problem and the fix. What comes out is a :class:`SeriesSet`: one float32 array per
series on a regular grid, NaN where nothing was observed.

Layout detection follows research/ecosystem.md §1.10 (flags always win):

1. ``id_col`` given, or an id alias and a time alias (or ``time_col``) in the header -> long.
2. else exactly one time column and every other column numeric -> wide (one series per column).
3. else -> error naming the flags.

Timestamps are handled as int64 nanoseconds. Tz-aware stamps of daily or coarser data are put on
their grid in the zone's wall-clock time (so a daily series stays daily across a DST change),
finer ones in UTC; forecasts come back in the user's zone. An integer time column outside the
year range 1678-2261 is a plain step index (written back as integers). Values whose magnitude
float32 cannot hold (around 1e300 or 1e-300) are divided by a per-series power of ten in float64
first (``SeriesSet.scales``) and multiplied back in ``forecast_frame``. Frequencies
are inferred per series with calendar rules that tolerate gaps (month/quarter/year starts and
ends, weeks, business days, fixed steps), falling back to ``pd.infer_freq`` for exotic offsets.
"""

from __future__ import annotations

import lzma
import re
import warnings
import zipfile
import zlib
import datetime as _dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.frequencies import to_offset

from tsfm.data.freq import FreqInfo, freq_info
from tsfm.errors import InputError

ID_ALIASES: tuple[str, ...] = ("unique_id", "item_id", "series_id", "id")
TIME_ALIASES: tuple[str, ...] = ("ds", "timestamp", "date", "datetime", "time")
TARGET_ALIASES: tuple[str, ...] = ("y", "target", "value")
FILL_MODES: tuple[str, ...] = ("mask", "ffill", "interpolate", "zero")
MULTIVARIATE_ID = "series"  # the one item of a wide/long frame read with multivariate=True

_DAY = 86_400 * 10**9
_WEEK = 7 * _DAY
_MIN_DENSITY = 0.25  # a fixed-step grid must have at least this share of its points observed
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_DEFAULT_ANCHORS = {"QS-JAN": "QS", "QE-DEC": "QE", "YS-JAN": "YS", "YE-DEC": "YE", "W-SUN": "W"}
# Observed magnitudes float32 and the models' scalers handle as they are; a series whose largest
# |value| falls outside is divided by a power of ten (in float64) before the float32 cast.
SAFE_MAGNITUDE = (1e-6, 1e12)


# --------------------------------------------------------------------------------------------
# SeriesSet
# --------------------------------------------------------------------------------------------


@dataclass
class SeriesSet:
    """Series on a regular grid: ``values[i]`` is ``[T_i, C]`` float32, NaN = missing.

    ``ids_as_channels`` is True when the C channels are separate input series gathered into one
    item (wide or long input read with ``multivariate=True``); :func:`forecast_frame` then
    writes one ``unique_id`` per channel, so the output looks the same with or without mixing.
    ``n_gaps[i]`` counts grid points that had no input row (before any fill).

    ``starts`` are naive: wall-clock times of ``tz`` when ``wall_time`` (daily and coarser data),
    else UTC; ``timestamps``/``last_timestamp``/``future_index`` give them back in ``tz``.
    ``step_index``: the time column was plain integers (stamps are those integers as ns; the
    methods above give integers back); ``resolution`` is then the user's ``--freq`` (season,
    default horizon, resolution token). ``scales [N, C]`` (None = all 1): the user's values are
    ``values[i] * scales[i]`` (float64); only series outside ``SAFE_MAGNITUDE`` get a factor.
    """

    ids: list[str]
    freq: str
    starts: list[pd.Timestamp]
    values: list[np.ndarray]
    target_names: list[str]
    past_exog: list[np.ndarray] | None = None
    future_exog: list[np.ndarray] | None = None
    past_exog_names: list[str] = field(default_factory=list)
    future_exog_names: list[str] = field(default_factory=list)
    layout: str = "long"
    ids_as_channels: bool = False
    n_gaps: list[int] = field(default_factory=list)
    tz: Any = None
    wall_time: bool = True
    step_index: bool = False
    resolution: str | None = None
    scales: np.ndarray | None = None
    month_first: bool = False  # stamps were dd/mm-or-mm/dd text that could not tell, read month-first

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)

    @property
    def n_channels(self) -> int:
        return len(self.target_names)

    @property
    def offset(self) -> pd.DateOffset:
        return to_offset(self.freq)

    @property
    def freq_info(self) -> FreqInfo:
        return freq_info(self.resolution or self.freq)

    def user_stamps(self, naive: pd.DatetimeIndex) -> pd.Index:
        """Internal naive stamps as the user wrote them: in their zone, or integers for a step index."""
        naive = pd.DatetimeIndex(naive)
        if self.step_index:
            return pd.Index(naive.asi8, dtype=np.int64)
        if self.tz is None:
            return naive
        if not self.wall_time:
            return naive.tz_localize("UTC").tz_convert(self.tz)
        return naive.tz_localize(self.tz, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward")

    def scale_of(self, i: int) -> np.ndarray:
        """[C] float64 factors giving series ``i``'s values back in the user's units."""
        return np.ones(self.n_channels) if self.scales is None else self.scales[i]

    def _last_naive(self, i: int) -> pd.Timestamp:
        return self.starts[i] + (len(self.values[i]) - 1) * self.offset

    def timestamps(self, i: int) -> pd.Index:
        """The grid stamps of series ``i``."""
        return self.user_stamps(pd.date_range(self.starts[i], periods=len(self.values[i]), freq=self.freq))

    def last_timestamp(self, i: int):
        return self.user_stamps(pd.DatetimeIndex([self._last_naive(i)]))[0]

    def future_index(self, i: int, h: int) -> pd.Index:
        """The next ``h`` stamps after series ``i``, continuing its grid."""
        return self.user_stamps(pd.date_range(self._last_naive(i), periods=h + 1, freq=self.freq)[1:])

    def subset(self, idx: Sequence[int] | np.ndarray | slice) -> "SeriesSet":
        """The series at ``idx`` (ints, a boolean mask or a slice), in that order."""
        picked = np.atleast_1d(np.arange(len(self))[idx]).tolist()

        def take(items: list | None) -> list | None:
            return None if items is None else [items[i] for i in picked]

        return replace(
            self,
            ids=take(self.ids),
            starts=take(self.starts),
            values=take(self.values),
            past_exog=take(self.past_exog),
            future_exog=take(self.future_exog),
            n_gaps=take(self.n_gaps) if self.n_gaps else [],
            scales=None if self.scales is None else self.scales[picked],
        )

    def truncate(self, n_last: int) -> "SeriesSet":
        """Drop the last ``n_last`` points of every series (a backtest cutoff)."""
        if n_last < 0:
            raise ValueError("n_last must be >= 0")
        if n_last == 0:
            return replace(self)
        short = [self.ids[i] for i, t in enumerate(self.lengths) if t <= n_last]
        if short:
            raise InputError(
                f"cannot hold out {n_last} points: {_names(short)} "
                f"{'has' if len(short) == 1 else 'have'} no more than {n_last} points; use fewer windows or a shorter horizon"
            )

        def cut(items: list[np.ndarray] | None) -> list[np.ndarray] | None:
            return None if items is None else [a[:-n_last] for a in items]

        return replace(self, values=cut(self.values), past_exog=cut(self.past_exog), future_exog=cut(self.future_exog))

    def split_last(self, k: int) -> tuple["SeriesSet", list[np.ndarray]]:
        """``(head, tails)``: the series without their last ``k`` points, and those points ``[k, C]``."""
        head = self.truncate(k)
        tails = [v[len(v) - k :] * self.scale_of(i) for i, v in enumerate(self.values)]
        return head, tails

    def to_frame(self) -> pd.DataFrame:
        """Long frame of the grid (NaN rows included): ``unique_id, ds, y`` (or one column per
        target when C > 1), then the exog columns; reading it back gives the same set."""
        per_channel = self.ids_as_channels or self.n_channels == 1
        parts = []
        for i in range(len(self)):
            ds = self.timestamps(i)
            exog = {}
            for names, arrays in ((self.past_exog_names, self.past_exog), (self.future_exog_names, self.future_exog)):
                for j, name in enumerate(names):
                    exog[name] = arrays[i][:, j]
            values = self.values[i] * self.scale_of(i) if self.scales is not None else self.values[i]
            if per_channel:
                for c, channel in enumerate(self.target_names):
                    uid = channel if self.ids_as_channels else self.ids[i]
                    parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": values[:, c], **exog}))
            else:
                cols = {name: values[:, c] for c, name in enumerate(self.target_names)}
                parts.append(pd.DataFrame({"unique_id": self.ids[i], "ds": ds, **cols, **exog}))
        return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table(path: str | Path, *, dtype: dict | None = None) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.csv.gz``/``.zip``/``.bz2``/``.xz`` by suffix, also ``;``/tab
    separated) or a Parquet file (``.parquet``/``.pq``). Column names are stripped of spaces.

    Raises InputError for a missing path, a directory, an empty file, a header with no rows,
    and a file that cannot be parsed (binary garbage, truncated Parquet, bad compression).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory; pass a CSV or Parquet file")
    if p.stat().st_size == 0:
        raise InputError(f"input file {p} is empty; it needs a header and at least one row")
    if p.suffix.lower() in _PARQUET_SUFFIXES:
        df = _read_parquet(p)
    else:
        df = _read_csv(p, dtype)
    if len(df.columns) == 0 or len(df) == 0:
        raise InputError(f"input file {p} has no data rows")
    return _clean_columns(df)


def _read_parquet(p: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise InputError(f"cannot read {p} as Parquet ({_first_line(exc)}); is the file complete?") from None


def _read_csv(p: Path, dtype: dict | None) -> pd.DataFrame:
    compression = _compression(p)
    if compression is None:
        with p.open("rb") as fh:
            head = fh.read(8192)
        if b"\x00" in head:
            raise InputError(f"cannot read {p}: it looks binary, not CSV (a Parquet file must end in .parquet)")
    try:
        sep = _sniff_separator(p, compression)
        options = _text_column_options(p, sep, compression, dtype)
        return pd.read_csv(p, sep=sep, compression=compression or "infer", **options)
    except pd.errors.EmptyDataError:
        raise InputError(f"input file {p} is empty; it needs a header and at least one row") from None
    except (zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:  # not OSError: a damaged compressed file
        raise InputError(f"cannot decompress {p} ({_first_line(exc)}); is the file complete?") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {p} as CSV ({_first_line(exc)}); check the file is UTF-8 text") from None


# pandas' default missing-value spellings (pandas._libs.parsers.STR_NA_VALUES)
_NA_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
            "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")


def _text_column_options(p: Path, sep: str, compression: str | None, dtype: dict | None) -> dict:
    """``read_csv`` options for ``dtype``: a column asked for as ``str`` (series ids) keeps ``NA``,
    ``None`` or ``nan`` as text (only an empty cell is missing); other columns keep pandas' defaults."""
    text = {str(c).strip() for c, kind in (dtype or {}).items() if kind is str}
    if not text:
        return {"dtype": dtype}
    raw = pd.read_csv(p, sep=sep, nrows=0, compression=compression or "infer").columns
    return {
        "dtype": {c: str for c in raw if str(c).strip() in text},
        "keep_default_na": False,
        "na_values": {c: ([""] if str(c).strip() in text else list(_NA_TEXT)) for c in raw},
    }


def _compression(p: Path) -> str | None:
    suffix = p.suffix.lower()
    return {".gz": "gzip", ".zip": "zip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}.get(suffix)


def _sniff_separator(p: Path, compression: str | None) -> str:
    """',' unless the header line clearly uses ';', tab or '|' instead."""
    if compression is None:
        with p.open("r", encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    else:
        first = pd.read_csv(p, compression=compression, header=None, nrows=1, sep="\x01").iloc[0, 0]
        first = str(first)
    counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def _header(p: Path) -> list[str]:
    """Column names of a file without reading its rows (errors surface in read_table)."""
    try:
        if p.suffix.lower() in _PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            return [str(c).strip() for c in pq.read_schema(p).names]
        compression = _compression(p)
        head = pd.read_csv(p, sep=_sniff_separator(p, compression), nrows=0, compression=compression or "infer")
        return [str(c).strip() for c in head.columns]
    except Exception:
        return []


def _clean_columns(df: pd.DataFrame) -> pd.DataFrame:
    names = [str(c).strip() for c in df.columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"duplicate column names: {', '.join(dupes)}; rename them")
    if names != list(df.columns):
        df = df.set_axis(names, axis=1)
    return df


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# --------------------------------------------------------------------------------------------
# Column roles (layout detection)
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """Where rows came from, so messages can say 'line 7' (files) or 'row 5' (frames)."""

    is_file: bool

    def at(self, row: int) -> str:
        return f"line {row + 2}" if self.is_file else f"row {row}"


@dataclass
class _Roles:
    layout: str
    id_col: str | None
    time_col: str
    targets: list[str]


def _as_list(x: str | Sequence[str] | None) -> list[str]:
    """A column name or names as a list without repeats."""
    if x is None:
        return []
    return list(dict.fromkeys([x] if isinstance(x, str) else [str(c) for c in x]))


def _alias(columns: Sequence[str], aliases: Sequence[str], exclude: Sequence[str] = ()) -> str | None:
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
    return bool(parsed.notna().all())


def _resolve_roles(
    df: pd.DataFrame,
    id_col: str | None,
    time_col: str | None,
    targets: list[str],
    past: list[str],
    future: list[str],
) -> _Roles:
    cols = list(df.columns)
    exog = past + future
    named = [c for c in (id_col, time_col, *targets, *exog) if c is not None]
    missing = list(dict.fromkeys(c for c in named if c not in cols))
    if missing:
        what = "column" if len(missing) == 1 else "columns"
        raise InputError(f"{what} {_names(missing)} not found; available columns: {', '.join(cols)}")
    _check_overlaps(id_col, time_col, targets, past, future)

    id_alias = _alias(cols, ID_ALIASES, exog)
    time_alias = time_col or _alias(cols, TIME_ALIASES, [*exog, *targets, id_col or ""])
    if id_col or (id_alias and time_alias):
        idc = id_col or id_alias
        tc = time_col or _alias(cols, TIME_ALIASES, [idc, *exog, *targets]) or _only_time_column(df, [idc, *exog, *targets])
        return _Roles("long", idc, tc, targets or _long_target(df, [idc, tc, *exog]))

    if time_col:
        candidates = [time_col]
    else:
        others = [c for c in cols if c not in exog and c not in targets]
        candidates = [c for c in others if c.lower() in TIME_ALIASES or _is_time_like(df[c])]
    if len(candidates) == 1:
        tc = candidates[0]
        series_cols = targets or [c for c in cols if c != tc and c not in exog]
        if series_cols and (targets or all(_is_numeric_like(df[c]) for c in series_cols)):
            return _Roles("wide", None, tc, series_cols)
    raise InputError("cannot tell long from wide format: pass --id-col/--time-col/--target")


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


def _only_time_column(df: pd.DataFrame, exclude: list[str]) -> str:
    found = [c for c in df.columns if c not in exclude and _is_time_like(df[c])]
    if len(found) != 1:
        raise InputError(f"cannot find the time column: pass --time-col (columns: {', '.join(df.columns)})")
    return found[0]


def _long_target(df: pd.DataFrame, exclude: list[str]) -> list[str]:
    alias = _alias(list(df.columns), TARGET_ALIASES, exclude)
    if alias:
        return [alias]
    numeric = [c for c in df.columns if c not in exclude and _is_numeric_like(df[c])]
    if len(numeric) == 1:
        return numeric
    if not numeric:
        raise InputError(f"no numeric column to forecast: pass --target (columns: {', '.join(df.columns)})")
    raise InputError(f"cannot tell which column is the target: pass --target (numeric columns: {', '.join(numeric)})")


# --------------------------------------------------------------------------------------------
# Column conversion
# --------------------------------------------------------------------------------------------


def _to_float(col: pd.Series, name: str, role: str, src: _Source) -> np.ndarray:
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


def _parse_times(col: pd.Series, name: str, src: _Source) -> tuple[np.ndarray, str | None]:
    """int64 nanoseconds of a time column (UTC when tz-aware) and the tz name (or None)."""
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_numeric_dtype(col):
        _no_missing_times(col, name, src)
    if ptypes.is_datetime64_any_dtype(col):
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
class _Times:
    """A parsed time column: int64 ns (wall clock or UTC, naive), the user's zone, and what they are."""

    ns: np.ndarray
    tz: Any = None  # a zone name, a tzinfo, or None for naive stamps
    wall: bool = True  # ns are wall-clock times of tz (daily and coarser data); else UTC
    steps: bool = False  # an integer step index, not dates
    slash_dates: bool = False  # text like 03/04/2020, read month-first (a hint if the grid fails)


_OFFSET_SUFFIX = re.compile(r"\s*(Z|[+-]\d{2}:?\d{2})$")
_SLASH_DATE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})(\s|T|$)")


def _parse_stamps(col: pd.Series, name: str, src: _Source) -> _Times:
    """Parse a time column for the grid: zones kept (wall clock for calendar data), integer steps, day-first dates."""
    if ptypes.is_datetime64_any_dtype(col) or ptypes.is_numeric_dtype(col):
        _no_missing_times(col, name, src)
    if (ptypes.is_numeric_dtype(col) or ptypes.is_bool_dtype(col)) and not ptypes.is_datetime64_any_dtype(col):
        vals = col.to_numpy()
        if ptypes.is_bool_dtype(col) or not bool(np.all(np.mod(vals, 1) == 0)):
            _parse_years(col, name)  # raises: numbers that are neither years nor integer steps
        ints = vals.astype(np.int64)
        if ints.min() >= 1678 and ints.max() <= 2261:
            return _Times(_parse_years(col, name).to_numpy(dtype="datetime64[ns]").astype(np.int64))
        return _Times(ints, steps=True)
    if ptypes.is_datetime64_any_dtype(col):
        ts = pd.Series(col)
    else:
        ts, dayfirst = _parse_text_times(col, name, src)
        if not dayfirst and _slash_dates(col):
            return replace(_zoned(ts, col), slash_dates=True)
    return _zoned(ts, None if ptypes.is_datetime64_any_dtype(col) else col)


def _slash_dates(text: pd.Series) -> bool:
    sample = text.head(200).dropna().astype(str).head(20)
    return bool(len(sample)) and bool(sample.str.match(_SLASH_DATE).all())


def _zoned(ts: pd.Series, text: pd.Series | None) -> _Times:
    """Naive int64 ns of parsed stamps: wall clock when every stamp has the same time of day
    (daily or coarser data, which DST must not make irregular), else UTC (no repeated hour)."""
    tz = getattr(ts.dt, "tz", None)
    if tz is None:
        return _Times(ts.to_numpy(dtype="datetime64[ns]").astype(np.int64))
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
    if len(np.unique(wall % _DAY)) == 1:  # daily or coarser: the grid lives in wall-clock time
        if mixed:  # the zone itself is unknown: future stamps get the latest stamp's offset
            tz = _dt.timezone(_dt.timedelta(seconds=int((wall - utc)[np.argmax(utc)]) // 10**9))
        return _Times(wall, tz=tz, wall=True)
    return _Times(utc, tz=tz, wall=False)  # mixed offsets: tz is UTC, the one zone known to be right


def _no_missing_times(col: pd.Series, name: str, src: _Source) -> None:
    missing = np.flatnonzero(col.isna().to_numpy())
    if missing.size:
        raise InputError(f"missing timestamp in column '{name}' at {src.at(int(missing[0]))}; fill or drop that row")


def _parse_years(col: pd.Series, name: str) -> pd.Series:
    vals = col.to_numpy()
    integral = ptypes.is_integer_dtype(col) or bool(np.all(np.mod(vals, 1) == 0))
    if integral and vals.min() >= 1678 and vals.max() <= 2261:
        return pd.Series(pd.to_datetime(vals.astype(np.int64).astype(str), format="%Y"))
    raise InputError(
        f"time column '{name}' holds numbers that are neither years nor integer steps (first value {vals[0]!r}); "
        "write dates like 2020-01-31 or integer steps 1, 2, 3"
    )


def _parse_text_times(text: pd.Series, name: str, src: _Source) -> tuple[pd.Series, bool]:
    """ISO first (fast); then pandas' format inference; then element-wise parsing.

    Returns the stamps and whether they were read day-first: dd/mm/yyyy text with a first field
    above 12 somewhere (and no second field above 12) is unambiguous and read that way.
    """
    ts = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = text.astype(str).str.extract(_SLASH_DATE) if _slash_dates(text) else None
        if parts is not None and parts[0].notna().all():
            first, second = parts[0].astype(int), parts[1].astype(int)
            if (first > 12).any() and (second <= 12).all():
                ts = pd.to_datetime(text, format="mixed", dayfirst=True, errors="coerce")
                if ts.notna().all():
                    return ts, True
        for fmt in ("ISO8601", None, "mixed"):
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
    raise InputError(
        f"cannot parse timestamp {text.iloc[bad]!r} in column '{name}' at {src.at(bad)}; "
        "use ISO dates like 2020-01-31 or 2020-01-31 13:00"
    )


# --------------------------------------------------------------------------------------------
# Rows in long form (before they are put on a grid)
# --------------------------------------------------------------------------------------------


@dataclass
class _Rows:
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
    wall: bool = True  # see _Times
    steps: bool = False
    slash_dates: bool = False

    def take(self, keep: np.ndarray) -> "_Rows":
        return replace(
            self,
            codes=self.codes[keep],
            times=self.times[keep],
            values=self.values[keep],
            past=self.past[keep],
            future=self.future[keep],
            rows=self.rows[keep],
        )


def _exog_matrix(df: pd.DataFrame, names: list[str], src: _Source) -> np.ndarray:
    if not names:
        return np.zeros((len(df), 0))
    return np.column_stack([_to_float(df[c], c, "exog", src) for c in names])


def _long_rows(df: pd.DataFrame, roles: _Roles, past: list[str], future: list[str], src: _Source) -> _Rows:
    values = np.column_stack([_to_float(df[c], c, "target", src) for c in roles.targets])
    past_x, future_x = _exog_matrix(df, past, src), _exog_matrix(df, future, src)
    codes, uniques = pd.factorize(df[roles.id_col], sort=False)
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        raise InputError(f"missing id in column '{roles.id_col}' at {src.at(int(missing[0]))}; fill or drop that row")
    parsed = _parse_stamps(df[roles.time_col], roles.time_col, src)
    times = parsed.ns
    ids = [str(u) for u in uniques]
    if len(set(ids)) < len(ids):  # e.g. 1 and "1" in one object column
        codes, uniques = pd.factorize(np.array(ids, dtype=object)[codes], sort=False)
        ids = [str(u) for u in uniques]
    return _Rows(
        ids=ids,
        codes=codes.astype(np.int64),
        times=times,
        values=values,
        past=past_x,
        future=future_x,
        rows=np.arange(len(df)),
        target_names=list(roles.targets),
        tz=parsed.tz, wall=parsed.wall, steps=parsed.steps, slash_dates=parsed.slash_dates,
    )


def _wide_rows(
    df: pd.DataFrame, roles: _Roles, past: list[str], future: list[str], multivariate: bool, src: _Source
) -> _Rows:
    values = np.column_stack([_to_float(df[c], c, "target", src) for c in roles.targets])
    past_x, future_x = _exog_matrix(df, past, src), _exog_matrix(df, future, src)
    parsed = _parse_stamps(df[roles.time_col], roles.time_col, src)
    times = parsed.ns
    zone = dict(tz=parsed.tz, wall=parsed.wall, steps=parsed.steps, slash_dates=parsed.slash_dates)
    observed = ~np.isnan(values)
    if multivariate:  # one item; its span runs from the first to the last row with any value
        keep = observed.any(axis=1)
        n = int(keep.sum())
        return _Rows(
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
    return _Rows(
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


def _ids_to_channels(rows: _Rows) -> _Rows:
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
    return _Rows(
        ids=[MULTIVARIATE_ID], codes=np.zeros(len(stamps), np.int64), times=stamps, values=values,
        past=first(rows.past), future=first(rows.future), rows=src_rows,
        target_names=list(rows.ids), tz=rows.tz, channels_are_series=True,
        wall=rows.wall, steps=rows.steps, slash_dates=rows.slash_dates,
    )


# --------------------------------------------------------------------------------------------
# Grids and frequency inference
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """How to place stamps on an offset's grid: fixed steps (ns), month steps, business days."""

    kind: str  # "tick" | "month" | "monthend" | "bday" | "other"
    step: int
    offset: pd.DateOffset


_MONTH_KINDS = {
    "MonthBegin": ("month", 1), "MonthEnd": ("monthend", 1),
    "QuarterBegin": ("month", 3), "QuarterEnd": ("monthend", 3),
    "YearBegin": ("month", 12), "YearEnd": ("monthend", 12),
}


def _grid_of(offset: pd.DateOffset) -> _Grid:
    name = type(offset).__name__
    if name == "Week":
        return _Grid("tick", 7 * offset.n * _DAY, offset)
    if isinstance(offset, pd.offsets.Tick):
        return _Grid("tick", int(offset.nanos), offset)
    if name in _MONTH_KINDS:
        kind, months = _MONTH_KINDS[name]
        return _Grid(kind, months * offset.n, offset)
    if name == "BusinessDay" and not offset.offset:
        return _Grid("bday", offset.n, offset)
    return _Grid("other", 0, offset)


class _Calendar:
    """Per-row calendar features of int64-ns stamps, computed once with numpy."""

    def __init__(self, t: np.ndarray) -> None:
        self.t = t
        self.days = t // _DAY
        self.tod = t - self.days * _DAY
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
class _Segments:
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


def _positions(grid: _Grid, cal: _Calendar, seg: _Segments) -> tuple[np.ndarray, np.ndarray]:
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


def _positions_by_range(offset: pd.DateOffset, t: np.ndarray, seg: _Segments) -> tuple[np.ndarray, np.ndarray]:
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


def _short_alias(alias: str) -> str:
    """``QS-JAN`` -> ``QS``, ``2W-SUN`` -> ``2W``; other aliases unchanged."""
    n, base = re.fullmatch(r"(\d*)(.*)", alias).groups()
    return n + _DEFAULT_ANCHORS.get(base, base)


def canonical_alias(freq: str | pd.DateOffset) -> str:
    """The alias ``load_series`` reports: pandas' own, with default anchors dropped
    (``QS-JAN`` -> ``QS``, ``W-SUN`` -> ``W``) and quarterly anchors folded to one grid
    (``QS-OCT`` -> ``QS``: both are Jan/Apr/Jul/Oct)."""
    offset = to_offset(freq)
    name = type(offset).__name__
    if name == "QuarterBegin":
        offset = pd.offsets.QuarterBegin(n=offset.n, startingMonth=(offset.startingMonth - 1) % 3 + 1)
    elif name == "QuarterEnd":
        offset = pd.offsets.QuarterEnd(n=offset.n, startingMonth=(offset.startingMonth - 1) % 3 + 10)
    return _short_alias(offset.freqstr)


def _month_alias(step: int, month0: int, end: bool) -> str:
    """Alias of a grid every ``step`` months through calendar month ``month0`` (1-12)."""
    if step % 12 == 0:
        n, base = step // 12, f"{'YE' if end else 'YS'}-{_MONTHS[month0 - 1]}"
    elif step == 3:
        n, base = 1, f"{'QE' if end else 'QS'}-{_MONTHS[month0 - 1]}"
    else:
        n, base = step, ("ME" if end else "MS")
    return canonical_alias(f"{n if n > 1 else ''}{base}")


def _infer_aliases(cal: _Calendar, seg: _Segments) -> list[tuple[str | None, bool]]:
    """Per series: (alias or None, regular?) from the calendar rules; series with < 3 stamps get None.

    Order (finest consistent grid that is not absurdly sparse): month starts, month ends, weeks,
    business days (weekday stamps spanning a weekend), fixed steps; business-day and fixed-step
    grids need >= 25% of their points observed. Anything else goes to ``pd.infer_freq``.
    """
    first, last, counts = seg.first, seg.last, seg.counts
    enough = counts >= 3
    tod_const = seg.constant(cal.tod)
    g_tick, g_month, g_bday = seg.gcd(cal.t), seg.gcd(cal.months), seg.gcd(cal.bdays)
    safe = lambda g: np.maximum(g, 1)  # noqa: E731 - guards one-row series
    span_tick = (cal.t[last] - cal.t[first]) // safe(g_tick) + 1
    span_month = (cal.months[last] - cal.months[first]) // safe(g_month) + 1
    span_bday = (cal.bdays[last] - cal.bdays[first]) // safe(g_bday) + 1
    weekend_inside = (cal.days[last] - cal.days[first]) > (cal.bdays[last] - cal.bdays[first])

    is_month = enough & tod_const & seg.all(cal.month_start)
    is_mend = enough & tod_const & seg.all(cal.month_end) & ~is_month
    rest = enough & ~is_month & ~is_mend
    is_week = rest & (g_tick % _WEEK == 0)
    is_bday = rest & ~is_week & tod_const & seg.all(cal.weekday < 5) & (g_tick % _DAY == 0) & weekend_inside
    is_bday &= counts >= _MIN_DENSITY * span_bday  # else e.g. business month starts (BMS)
    is_tick = rest & ~is_week & ~is_bday & (counts >= _MIN_DENSITY * span_tick)

    out: list[tuple[str | None, bool]] = []
    for k in range(len(first)):
        month0 = int(cal.months[first[k]] % 12) + 1
        if is_month[k] or is_mend[k]:
            out.append((_month_alias(int(g_month[k]), month0, end=bool(is_mend[k])), span_month[k] == counts[k]))
        elif is_week[k]:
            n = int(g_tick[k] // _WEEK)
            day = _WEEKDAYS[int(cal.weekday[first[k]])]
            out.append((_short_alias(f"{n if n > 1 else ''}W-{day}"), span_tick[k] == counts[k]))
        elif is_bday[k]:
            n = int(g_bday[k])
            out.append((f"{n if n > 1 else ''}B", span_bday[k] == counts[k]))
        elif is_tick[k]:
            out.append((to_offset(pd.Timedelta(int(g_tick[k]), "ns")).freqstr, span_tick[k] == counts[k]))
        elif enough[k]:
            guess = pd.infer_freq(pd.DatetimeIndex(cal.t[first[k] : last[k] + 1]))
            out.append((canonical_alias(guess) if guess else None, True))
        else:
            out.append((None, False))
    return out


def _resolve_freq(
    ids: list[str], cal: _Calendar, seg: _Segments
) -> str:
    """One frequency for all series, or an InputError naming the irregular / mixed ids."""
    inferred = _infer_aliases(cal, seg)
    failed = [k for k, (alias, _) in enumerate(inferred) if alias is None and seg.counts[k] >= 3]
    if failed:
        day = _same_day_of_month(cal, seg, failed[0])
        if day:
            raise InputError(
                f"cannot infer the frequency of {_names([ids[k] for k in failed])}: monthly stamps on day {day} "
                "are not a pandas grid; move them to month starts (e.g. 2020-01-01) or month ends"
            )
        raise InputError(
            f"cannot infer the frequency of {_names([ids[k] for k in failed])}: timestamps are irregular; "
            "pass --freq with a pandas alias (e.g. D, h, W, MS, QS, YS)"
        )
    known = [(k, a, reg) for k, (a, reg) in enumerate(inferred) if a is not None]
    if not known:
        raise InputError("cannot infer the frequency: every series has fewer than 3 timestamps; pass --freq")
    reference = [(k, a) for k, a, reg in known if reg] or [(k, a) for k, a, _ in known]
    by_alias: dict[str, str] = {}
    for k, a in reference:
        by_alias.setdefault(a, ids[k])
    if len(by_alias) > 1:
        raise InputError(f"series have different frequencies ({_freq_examples(by_alias)}); forecast them separately")
    freq = next(iter(by_alias))
    _, ok = _positions(_grid_of(to_offset(freq)), cal, seg)
    if not ok.all():
        k = int(seg.of_rows()[np.flatnonzero(~ok)[0]])
        own = inferred[k][0]
        if own and own != freq:
            detail = f"'{ids[k]}' is {_shown(own)}"
        else:  # same step, other phase (time of day, anchor): saying "X is MS" twice would contradict itself
            detail = f"'{ids[k]}' ({seg.counts[k]} points) is off that grid"
        raise InputError(f"series have different frequencies (most are {_shown(freq)}; {detail}); "
                         "forecast them separately")
    return freq


def _same_day_of_month(cal: _Calendar, seg: _Segments, k: int) -> int | None:
    """The day of month shared by all stamps of series ``k`` in distinct months, if any."""
    rows = slice(seg.first[k], seg.last[k] + 1)
    months = cal.months[rows]
    days = cal.days[rows] - months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) + 1
    if len(np.unique(months)) == len(months) and len(np.unique(days)) == 1:
        return int(days[0])
    return None


def _shown(alias: str) -> str:
    """An alias for messages: integer step indexes live on a nanosecond grid, shown as steps."""
    match = re.fullmatch(r"(\d*)ns", alias)
    if match is None:
        return alias
    n = int(match.group(1) or 1)
    return "every step" if n == 1 else f"every {n} steps"


def _freq_examples(by_alias: dict[str, str]) -> str:
    items = [f"'{uid}' is {_shown(alias)}" for alias, uid in by_alias.items()]
    return ", ".join(items[:4]) + (f", and {len(items) - 4} more" if len(items) > 4 else "")


def _user_offset(freq: str) -> pd.DateOffset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            offset = to_offset(freq)
        except (ValueError, TypeError):
            offset = None
    if offset is None or offset.n <= 0:
        raise InputError(f"unknown frequency {freq!r}: use a pandas alias such as D, h, 30min, W, MS, QS, YS")
    return offset


# --------------------------------------------------------------------------------------------
# Putting rows on the grid
# --------------------------------------------------------------------------------------------


def _fill(flat: np.ndarray, seg_start: np.ndarray, how: str) -> np.ndarray:
    """Fill NaN along time within each series ([total, C]; series start at ``seg_start``)."""
    if how == "mask" or not np.isnan(flat).any():
        return flat
    if how == "zero":
        return np.nan_to_num(flat, nan=0.0)
    n = len(flat)
    row_start = np.repeat(seg_start, np.diff(np.r_[seg_start, n]))[:, None]
    idx = np.arange(n)[:, None]
    valid = ~np.isnan(flat)
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    has_prev = prev >= row_start
    prev_val = np.where(has_prev, np.take_along_axis(flat, np.maximum(prev, 0), axis=0), np.nan)
    if how == "ffill":
        return np.where(valid, flat, prev_val)
    # interpolate: linear between neighbours; trailing gaps hold the last value, leading stay NaN
    row_end = np.repeat(np.r_[seg_start[1:], n], np.diff(np.r_[seg_start, n]))[:, None]
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1], axis=0)[::-1]
    has_next = nxt < row_end
    next_val = np.take_along_axis(flat, np.minimum(nxt, n - 1), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (idx - prev) / np.maximum(nxt - prev, 1)
        interp = prev_val + (next_val - prev_val) * frac
    out = np.where(has_prev & has_next, interp, prev_val)
    return np.where(valid, flat, out)


def _sorted(rows: _Rows) -> _Rows:
    """Rows grouped by series (first-appearance order), by time within each (skipped if already so)."""
    dc, dt = np.diff(rows.codes), np.diff(rows.times)
    if ((dc == 1) | ((dc == 0) & (dt > 0))).all() and (len(rows.codes) == 0 or rows.codes[0] == 0):
        return rows
    return rows.take(np.lexsort((rows.times, rows.codes)))


def _place(rows: _Rows, freq: str | None, fill: str, min_length: int, src: _Source) -> SeriesSet:
    rows = _sorted(rows)
    _check_duplicates(rows, src)

    first = np.flatnonzero(np.r_[True, rows.codes[1:] != rows.codes[:-1]])
    seg = _Segments(first=first, counts=np.diff(np.r_[first, len(rows.codes)]))
    cal = _Calendar(rows.times)
    resolution = None
    if rows.steps and freq is not None:  # integer steps: --freq says what a step is (season, horizon)
        resolution = _short_alias(_user_offset(freq).freqstr)
        freq = "ns"
    try:
        if freq is None:
            freq = _resolve_freq(rows.ids, cal, seg)
        else:
            freq = _check_user_freq(freq, rows.ids, cal, seg)
    except InputError as err:
        if rows.slash_dates:
            raise InputError(f"{err}; dates like 03/04/2020 were read month-first: if they are day-first, "
                             "write them as ISO dates (2020-04-03)") from None
        raise
    pos, _ = _positions(_grid_of(to_offset(freq)), cal, seg)

    lengths = pos[seg.last] + 1
    seg_start = np.r_[0, np.cumsum(lengths)[:-1]]
    dest = seg_start[seg.of_rows()] + pos
    total = int(lengths.sum())
    scales = _magnitude_scales(rows.values, seg)  # [K, C] or None

    def on_grid(x: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        out = np.full((total, x.shape[1]), np.nan)
        out[dest] = x if scale is None else x / scale[seg.of_rows()]
        return _fill(out, seg_start, fill).astype(np.float32)

    values = on_grid(rows.values, scales)
    _check_observed(rows, seg, min_length)
    split = lambda a: np.split(a, seg_start[1:])  # noqa: E731
    starts = pd.DatetimeIndex(rows.times[seg.first].astype("datetime64[ns]"))
    return SeriesSet(
        ids=list(rows.ids),
        freq=freq,
        starts=list(starts),
        values=split(values),
        target_names=list(rows.target_names),
        past_exog=split(on_grid(rows.past)) if rows.past.shape[1] else None,
        future_exog=split(on_grid(rows.future)) if rows.future.shape[1] else None,
        n_gaps=[int(g) for g in lengths - seg.counts],
        tz=rows.tz, wall_time=rows.wall, step_index=rows.steps, resolution=resolution, scales=scales,
        month_first=rows.slash_dates,
    )


def _magnitude_scales(values: np.ndarray, seg: _Segments) -> np.ndarray | None:
    """[K, C] float64 powers of ten for series whose largest |value| is outside ``SAFE_MAGNITUDE``
    (1e300 would overflow float32, 1e-300 would become 0); None when every series is inside."""
    with np.errstate(invalid="ignore"):
        biggest = np.fmax.reduceat(np.abs(values), seg.first, axis=0) if len(values) else np.zeros((0, values.shape[1]))
    lo, hi = SAFE_MAGNITUDE
    outside = np.isfinite(biggest) & (biggest > 0) & ((biggest < lo) | (biggest > hi))
    if not outside.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.clip(np.floor(np.log10(np.where(outside, biggest, 1.0))), -307, 307)  # 10**-324 is 0
    return np.where(outside, 10.0 ** power, 1.0)


def _check_duplicates(rows: _Rows, src: _Source) -> None:
    same = (rows.codes[1:] == rows.codes[:-1]) & (rows.times[1:] == rows.times[:-1])
    if not same.any():
        return
    pairs = np.flatnonzero(same)
    later = np.maximum(rows.rows[pairs], rows.rows[pairs + 1])
    j = int(pairs[np.argmin(later)])
    uid, stamp = rows.ids[rows.codes[j]], pd.Timestamp(int(rows.times[j]))
    a, b = sorted((int(rows.rows[j]), int(rows.rows[j + 1])))
    raise InputError(
        f"duplicate timestamp {stamp} for series '{uid}' ({src.at(a)} and {src.at(b)}); keep one row per id and time"
    )


def _check_user_freq(freq: str, ids: list[str], cal: _Calendar, seg: _Segments) -> str:
    offset = _user_offset(freq)
    _, ok = _positions(_grid_of(offset), cal, seg)
    if ok.all():
        return _short_alias(offset.freqstr)
    bad = int(np.flatnonzero(~ok)[0])
    k = int(seg.of_rows()[bad])
    try:
        guess = _resolve_freq(ids, cal, seg)
        hint = f"; the data look like {guess}: pass --freq {guess}"
    except InputError:
        hint = "; check --freq"
    raise InputError(
        f"timestamps of series '{ids[k]}' are not on the {freq} grid "
        f"(first off-grid stamp {pd.Timestamp(int(cal.t[bad]))}){hint}"
    )


def _check_observed(rows: _Rows, seg: _Segments, min_length: int) -> None:
    """All-NaN series first (the more specific diagnosis), then series below ``min_length``."""
    counts = np.add.reduceat((~np.isnan(rows.values)).astype(np.int64), seg.first, axis=0)  # [K, C]

    def label(k: int, c: int) -> str:
        if rows.channels_are_series:
            return rows.target_names[c]
        return f"{rows.ids[k]}/{rows.target_names[c]}" if len(rows.target_names) > 1 else rows.ids[k]

    empty = list(rows.empty_ids) + [label(k, c) for k, c in zip(*np.nonzero(counts == 0))]
    if empty:
        raise InputError(f"series with no values (all missing): {_names(empty)}; drop them or fill them in")
    short = [(label(k, c), int(counts[k, c])) for k, c in zip(*np.nonzero(counts < min_length))]
    if short:
        listed = ", ".join(f"'{name}' ({n})" for name, n in short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        raise InputError(
            f"{len(short)} series {'has' if len(short) == 1 else 'have'} fewer than {min_length} observed points: "
            f"{listed}; drop them or provide more history"
        )


def _names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _as_frame(data: str | Path | pd.DataFrame | pd.Series, id_col: str | None) -> tuple[pd.DataFrame, _Source]:
    if isinstance(data, pd.Series):
        data = data.to_frame(name=str(data.name) if data.name is not None else "y")
    if isinstance(data, pd.DataFrame):
        df = data
        if not isinstance(df.index, pd.RangeIndex):  # a DatetimeIndex / (id, ds) MultiIndex holds columns
            names = [n if n is not None else ("ds" if isinstance(df.index, pd.DatetimeIndex) else f"level_{i}")
                     for i, n in enumerate(df.index.names)]
            df = df.rename_axis(names).reset_index()
        df = _clean_columns(df)
        if len(df) == 0:
            raise InputError("the data frame has no rows")
        return df, _Source(is_file=False)
    path = Path(data)
    header = _header(path) if path.is_file() else []
    id_cols = [c for c in header if c == id_col or c.lower() in ID_ALIASES]
    df = read_table(path, dtype={c: str for c in id_cols} or None)
    return df, _Source(is_file=True)


def _drop_empty_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Drop rows with no value at all (spreadsheet exports end with ',,,'); cheap when there are none."""
    for name in df.columns:
        col = df[name]
        if ptypes.is_numeric_dtype(col) and not ptypes.is_bool_dtype(col) and not col.hasnans:
            return df
    return df.dropna(how="all")


def load_series(
    data: str | Path | pd.DataFrame,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    target: str | Sequence[str] | None = None,
    past_exog: Sequence[str] | None = None,
    future_exog: Sequence[str] | None = None,
    freq: str | None = None,
    multivariate: bool = False,
    fill: str = "mask",
    min_length: int = 3,
) -> SeriesSet:
    """Validate a long or wide table and put every series on one regular grid.

    Long: one row per (id, time), targets as columns (several targets -> channels per id).
    Wide: a time column and one numeric column per series (``multivariate=True``: one item whose
    channels are those columns; for long input with one target, the ids become the channels).
    Rows are sorted by time per id; ids keep first-appearance order; fully empty rows are dropped.
    ``fill``: "mask" (keep NaN; also "none"), "ffill", "interpolate" (trailing gaps hold the last
    value, leading NaN stay) or "zero", applied to targets and exog. Raises InputError.
    """
    fill = "mask" if fill == "none" else fill
    if fill not in FILL_MODES:
        raise InputError(f"unknown fill {fill!r}: use one of none, mask, ffill, interpolate, zero")
    targets, past, future = _as_list(target), _as_list(past_exog), _as_list(future_exog)
    df, src = _as_frame(data, id_col)
    df = _drop_empty_rows(df)
    if len(df) == 0:
        raise InputError("the input has no rows with values")
    roles = _resolve_roles(df, id_col, time_col, targets, past, future)
    if roles.layout == "long":
        rows = _long_rows(df, roles, past, future, src)
    else:
        rows = _wide_rows(df, roles, past, future, multivariate, src)
    if roles.layout == "long" and multivariate and len(roles.targets) == 1:
        _check_duplicates(_sorted(rows), src)
        rows = _ids_to_channels(rows)
    if not rows.ids:  # a wide table whose series columns are all empty
        raise InputError(f"series with no values (all missing): {_names(rows.empty_ids)}; drop them or fill them in")
    series = _place(rows, freq, fill, min_length, src)
    series.layout = roles.layout
    series.ids_as_channels = rows.channels_are_series
    series.past_exog_names, series.future_exog_names = past, future
    return series


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
            resolution=header["resolution"], scales=data["scales"].copy() if data["scales"].size else None,
        )


def level_names(levels: Sequence[float]) -> list[str]:
    """Column names of quantile levels when the user gave no spelling: ``0.1 -> "0.1"``."""
    return [str(float(q)) for q in levels]


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
            f"quantiles shape {q.shape} does not match {len(series)} series, {series.n_channels} channels, {len(levels)} levels"
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
        last = series._last_naive(i)
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
