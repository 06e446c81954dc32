"""Frequency tables: one place that knows what a pandas frequency means to a forecaster.

GluonTS' helpers raise for ``MS``/``QS``/``YS``/``B`` and give weekly/daily data a season of 1,
so the tables here are ours. Frequencies are compared as offsets, never as strings: ``QS-OCT``
is quarterly, ``W-SAT`` is weekly, ``ME`` and ``MS`` are both monthly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pandas.tseries.frequencies import to_offset

# Resolution tokens for TTM's resolution prefix tuning. Index = token id; 0 is out-of-vocabulary.
# Unlike granite-tsfm's mapping, monthly, quarterly and yearly data get tokens of their own.
FREQ_VOCAB: tuple[str, ...] = (
    "oov", "s", "min", "5min", "10min", "15min", "30min", "h", "D", "B", "W", "M", "Q", "Y",
)

# canonical name -> (seasonal period, default horizon). Seasonal periods follow the eval
# manifest (Y=1, Q=4, M=12, W=52, D=7, B=5, h=24, 30min=48); horizons follow M4
# (H 48, D 14, W 13, M 18, Q 8, Y 6) with one day of steps for sub-hourly data.
_TABLE: dict[str, tuple[int, int]] = {
    "s": (60, 60),
    "min": (1440, 1440),
    "5min": (288, 288),
    "10min": (144, 144),
    "15min": (96, 96),
    "30min": (48, 48),
    "h": (24, 48),
    "D": (7, 14),
    "B": (5, 14),
    "W": (52, 13),
    "M": (12, 18),
    "Q": (4, 8),
    "Y": (1, 6),
}

# pandas offset class name -> (canonical base name, seconds-ish rank used to order resolutions)
_BASES: dict[str, str] = {
    "Second": "s",
    "Minute": "min",
    "Hour": "h",
    "Day": "D",
    "BusinessDay": "B",
    "Week": "W",
    "MonthBegin": "M",
    "MonthEnd": "M",
    "QuarterBegin": "Q",
    "QuarterEnd": "Q",
    "YearBegin": "Y",
    "YearEnd": "Y",
}


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
    offset = to_offset(freq)
    base = _BASES.get(type(offset).__name__, "")
    if not base:
        return ""
    n = offset.n
    if base == "min":
        name = "min" if n == 1 else f"{n}min"
        if n == 60:
            return "h"
        return name if name in _TABLE else ""
    if base == "s":
        return "s" if n == 1 else ("min" if n == 60 else "")
    if base == "h":
        return "h" if n == 1 else ("D" if n == 24 else "")
    if base == "D":
        return "D" if n == 1 else ("W" if n == 7 else "")
    if base == "M":
        return "M" if n == 1 else ("Q" if n == 3 else ("Y" if n == 12 else ""))
    if base == "Q":
        return "Q" if n == 1 else ("Y" if n == 4 else "")
    return base if n == 1 else ""


def freq_info(freq: str | pd.DateOffset) -> FreqInfo:
    """Seasonality, default horizon and resolution token of a frequency.

    Unknown or unusual multiples (``7h``) still forecast: season 1, horizon 14, token 0.
    """
    offset = to_offset(freq)
    name = canonical_name(offset)
    season, horizon = _TABLE.get(name, (1, 14))
    token = FREQ_VOCAB.index(name) if name in FREQ_VOCAB else 0
    return FreqInfo(alias=offset.freqstr, name=name, season=season, horizon=horizon, token=token)


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
