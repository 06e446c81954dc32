"""Frequencies: what a pandas frequency means to a forecaster, and which one a set of stamps has.

Tables. GluonTS' helpers raise for ``MS``/``QS``/``YS``/``B`` and give weekly/daily data a
season of 1, so the tables here are ours. Frequencies are compared as offsets, never as
strings: ``QS-OCT`` is quarterly, ``W-SAT`` is weekly, ``ME`` and ``MS`` are both monthly.

Inference. Frequencies are inferred per series with calendar rules that tolerate gaps
(month/quarter/year starts and ends, weeks, business days, fixed steps), falling back to
``pd.infer_freq`` for exotic offsets; every series of a table must share one
(:func:`infer_common_freq`), or match the one the user gave (:func:`check_user_freq`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from tsfm.data.grid import Calendar, Segments, grid_of, grid_positions
from tsfm.data.messages import quoted_names
from tsfm.data.timestamps import DAY_NS
from tsfm.errors import InputError
from tsfm_runtime import freq as freqs

# The resolution names, seasonal periods, default horizons and tokens are the edge runtime's
# tables (numpy-only), so that an exported model reads a frequency exactly as the package does.
FREQ_VOCAB = freqs.FREQ_VOCAB


@dataclass(frozen=True)
class FreqInfo:
    """What the package needs to know about a series' frequency."""

    alias: str  # the pandas alias as written (e.g. "QS-OCT"), used to build timestamps
    name: str  # canonical name ("Q"), or "" when it is none of the known resolutions
    season: int  # seasonal period (1 when there is none)
    horizon: int  # default forecast horizon
    token: int  # resolution token id (0 = out of vocabulary)


def canonical_name(freq: str | pd.DateOffset) -> str:
    """Canonical resolution name of a frequency ("" if unknown): ``QS-OCT`` -> ``Q``, ``30min`` -> ``30min``."""
    return freqs.resolution_name(to_offset(freq).freqstr)


def freq_info(freq: str | pd.DateOffset) -> FreqInfo:
    """Seasonality, default horizon and resolution token of a frequency.

    Unknown or unusual multiples still forecast: horizon 14, token 0, and the base's season in
    fewer steps where the multiple divides it (``6h``: 4; ``7h``: 1).
    """
    offset = to_offset(freq)
    name = canonical_name(offset)
    horizon = freqs.season_and_horizon(name)[1]
    return FreqInfo(alias=offset.freqstr, name=name, season=freqs.season_of(offset.freqstr), horizon=horizon,
                    token=freqs.token(name))


def freq_token(freq: str | pd.DateOffset | None) -> int:
    """Resolution token id for TTM's prefix tuning (0 when unknown or not given)."""
    if freq is None:
        return 0
    return freq_info(freq).token


def downsampled_name(name: str, factor: int) -> str:
    """Canonical name of a resolution after keeping every ``factor``-th step ("" if it has none).

    Used by the downsampling augmentation so that a downsampled series gets a truthful token.
    """
    steps = {
        ("s", 60): "min", ("min", 5): "5min", ("min", 10): "10min", ("min", 15): "15min",
        ("min", 30): "30min", ("min", 60): "h", ("5min", 2): "10min", ("5min", 3): "15min",
        ("5min", 6): "30min", ("5min", 12): "h", ("10min", 3): "30min", ("10min", 6): "h",
        ("15min", 2): "30min", ("15min", 4): "h", ("30min", 2): "h", ("h", 24): "D",
        ("D", 7): "W", ("M", 3): "Q", ("M", 12): "Y", ("Q", 4): "Y",
    }
    return steps.get((name, factor), "")


def same_freq(a: str | pd.DateOffset, b: str | pd.DateOffset) -> bool:
    """True when two frequencies mean the same resolution: ``QS-OCT`` is ``QS``, ``ME`` is ``MS``.

    Known resolutions compare by canonical name (a forecaster cares about the step, not the
    anchor month); anything else compares as offsets.
    """
    name_a, name_b = canonical_name(a), canonical_name(b)
    if name_a and name_b:
        return name_a == name_b
    return to_offset(a) == to_offset(b)


# --------------------------------------------------------------------------------------------
# Inferring one frequency from the stamps of every series
# --------------------------------------------------------------------------------------------

_WEEK = 7 * DAY_NS
_MIN_DENSITY = 0.25  # a fixed-step grid must have at least this share of its points observed
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_DEFAULT_ANCHORS = {"QS-JAN": "QS", "QE-DEC": "QE", "YS-JAN": "YS", "YE-DEC": "YE", "W-SUN": "W"}


def short_alias(alias: str) -> str:
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
    return short_alias(offset.freqstr)


def _month_alias(step: int, month0: int, end: bool) -> str:
    """Alias of a grid every ``step`` months through calendar month ``month0`` (1-12)."""
    if step % 12 == 0:
        n, base = step // 12, f"{'YE' if end else 'YS'}-{_MONTHS[month0 - 1]}"
    elif step == 3:
        n, base = 1, f"{'QE' if end else 'QS'}-{_MONTHS[month0 - 1]}"
    else:
        n, base = step, ("ME" if end else "MS")
    return canonical_alias(f"{n if n > 1 else ''}{base}")


def _infer_aliases(cal: Calendar, seg: Segments) -> list[tuple[str | None, bool]]:
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
    is_bday = rest & ~is_week & tod_const & seg.all(cal.weekday < 5) & (g_tick % DAY_NS == 0) & weekend_inside
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
            out.append((short_alias(f"{n if n > 1 else ''}W-{day}"), span_tick[k] == counts[k]))
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


def infer_common_freq(
    ids: list[str], cal: Calendar, seg: Segments
) -> str:
    """One frequency for all series, or an InputError naming the irregular / mixed ids."""
    inferred = _infer_aliases(cal, seg)
    failed = [k for k, (alias, _) in enumerate(inferred) if alias is None and seg.counts[k] >= 3]
    if failed:
        day = _same_day_of_month(cal, seg, failed[0])
        if day:
            raise InputError(
                f"cannot infer the frequency of {quoted_names([ids[k] for k in failed])}: monthly stamps on day {day} "
                "are not a pandas grid; move them to month starts (e.g. 2020-01-01) or month ends"
            )
        raise InputError(
            f"cannot infer the frequency of {quoted_names([ids[k] for k in failed])}: timestamps are irregular; "
            "pass --freq / freq= with a pandas alias (e.g. D, h, W, MS, QS, YS)"
        )
    known = [(k, a, reg) for k, (a, reg) in enumerate(inferred) if a is not None]
    if not known:
        raise InputError("cannot infer the frequency: every series has fewer than 3 timestamps; pass --freq / freq=")
    reference = [(k, a) for k, a, reg in known if reg] or [(k, a) for k, a, _ in known]
    by_alias: dict[str, str] = {}
    for k, a in reference:
        by_alias.setdefault(a, ids[k])
    if len(by_alias) > 1:
        raise InputError(f"series have different frequencies ({_freq_examples(by_alias)}); forecast them separately")
    freq = next(iter(by_alias))
    _, ok = grid_positions(grid_of(to_offset(freq)), cal, seg)
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


def _same_day_of_month(cal: Calendar, seg: Segments, k: int) -> int | None:
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


def user_offset(freq: str) -> pd.DateOffset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            offset = to_offset(freq)
        except (ValueError, TypeError):
            offset = None
    if offset is None or offset.n <= 0:
        raise InputError(f"unknown frequency {freq!r}: use a pandas alias such as D, h, 30min, W, MS, QS, YS")
    return offset


def _check_not_finer(freq: str, offset, pos: np.ndarray, ids: list[str], cal: Calendar, seg: Segments) -> None:
    """InputError when ``freq`` is finer than the data's own frequency and leaves most of the grid empty
    (monthly rows given ``--freq D``): nobody means a series that is 97% missing. A finer grid is kept
    where the data's own spacing is no calendar resolution (irregular rows, or every third day,
    placed on a grid on purpose)."""
    grid_points = int((pos[seg.last] + 1).sum())
    if grid_points <= 2 * len(pos):
        return
    try:
        own = infer_common_freq(ids, cal, seg)
    except InputError:
        return
    if not canonical_name(own) or canonical_name(own) == canonical_name(offset):  # no calendar resolution of their own
        return
    empty = 1 - len(pos) / grid_points
    raise InputError(f"--freq {freq} leaves {empty:.0%} of the grid empty: the data look like {own}; pass "
                     f"--freq {own} / freq='{own}', or leave it out")


def check_user_freq(freq: str, ids: list[str], cal: Calendar, seg: Segments) -> str:
    offset = user_offset(freq)
    pos, ok = grid_positions(grid_of(offset), cal, seg)
    if ok.all():
        _check_not_finer(freq, offset, pos, ids, cal, seg)
        return short_alias(offset.freqstr)
    bad = int(np.flatnonzero(~ok)[0])
    k = int(seg.of_rows()[bad])
    try:
        guess = infer_common_freq(ids, cal, seg)
        hint = f"; the data look like {guess}: pass --freq {guess} / freq='{guess}'"
    except InputError:
        hint = "; check --freq"
    raise InputError(
        f"timestamps of series '{ids[k]}' are not on the {freq} grid "
        f"(first off-grid stamp {pd.Timestamp(int(cal.t[bad]))}){hint}"
    )
