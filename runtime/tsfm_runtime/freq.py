"""What a frequency means to a forecaster, from its pandas alias, without pandas.

One table for the package and the edge runtime: the resolution name of an alias (``"QS-OCT"``
is quarterly, ``"60min"`` hourly), its seasonal period and default horizon, and the resolution
token TTM reads. Unlike granite-tsfm's mapping, monthly, quarterly and yearly data get tokens of
their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# Resolution tokens. Index = token id; 0 is out-of-vocabulary.
FREQ_VOCAB: tuple[str, ...] = (
    "oov", "s", "min", "5min", "10min", "15min", "30min", "h", "D", "B", "W", "M", "Q", "Y",
)

# resolution name -> (seasonal period, default horizon). Seasonal periods: Y=1, Q=4, M=12, W=52,
# D=7, B=5, h=24, 30min=48; horizons follow M4 (h 48, D 14, W 13, M 18, Q 8, Y 6), with one day
# of steps for sub-hourly data.
SEASON_AND_HORIZON: dict[str, tuple[int, int]] = {
    "s": (60, 60), "min": (1440, 1440), "5min": (288, 288), "10min": (144, 144), "15min": (96, 96),
    "30min": (48, 48), "h": (24, 48), "D": (7, 14), "B": (5, 14), "W": (52, 13), "M": (12, 18),
    "Q": (4, 8), "Y": (1, 6),
}
UNKNOWN_SEASON_AND_HORIZON = (1, 14)  # an alias with no resolution (``7h``) still forecasts

# pandas offset base alias (upper case) -> resolution base.
_BASES = {
    "S": "s", "T": "min", "MIN": "min", "H": "h", "D": "D", "B": "B", "W": "W",
    "M": "M", "ME": "M", "MS": "M", "Q": "Q", "QE": "Q", "QS": "Q",
    "Y": "Y", "YE": "Y", "YS": "Y", "A": "Y", "AS": "Y",
    # stamped on business days (the last trading day of a month...): still one value a month, quarter, year
    "BM": "M", "BME": "M", "BMS": "M", "CBM": "M", "CBME": "M", "CBMS": "M",
    "BQ": "Q", "BQE": "Q", "BQS": "Q", "BA": "Y", "BAS": "Y", "BY": "Y", "BYE": "Y", "BYS": "Y",
}
# pandas aliases that are valid but have no resolution (token 0).
_NO_RESOLUTION = {"L", "U", "US", "N", "NS", "C", "BH", "CBH", "SM", "SME", "SMS", "WOM"}
# (base, multiple) -> resolution name: 60 minutes is hourly, 3 months quarterly...
_MULTIPLES = {
    ("s", 60): "min", ("min", 60): "h", ("min", 5): "5min", ("min", 10): "10min", ("min", 15): "15min",
    ("min", 30): "30min", ("h", 24): "D", ("D", 7): "W", ("M", 3): "Q", ("M", 12): "Y", ("Q", 4): "Y",
}
_ALIAS = re.compile(r"^\+?(\d*)([A-Za-z]+)(?:-[A-Za-z0-9]+)?$")
_OTHER_NUMBER = re.compile(r"^[+-]?\d*\.?\d+[A-Za-z]+(?:-[A-Za-z0-9]+)?$")  # "1.5h", "-1D": valid, no resolution
_FRACTION = re.compile(r"^\+?(\d*\.\d+)([A-Za-z]+)$")  # "0.5h": pandas reads it as 30 minutes
_SECONDS = {"S": 1, "T": 60, "MIN": 60, "H": 3600, "D": 86400}
_RESOLUTION_OF_SECONDS = {1: "s", 60: "min", 300: "5min", 600: "10min", 900: "15min", 1800: "30min", 3600: "h",
                          86400: "D"}


def resolution_name(alias: str) -> str:
    """Resolution name of a pandas frequency alias (``"QS-OCT"`` -> ``"Q"``; ``""`` when it has none).

    An alias pandas would not parse either raises ``ValueError``.
    """
    text = str(alias).strip()
    match = _ALIAS.match(text)
    if match is None:
        fraction = _FRACTION.match(text)
        unit = fraction.group(2).upper() if fraction else ""
        if unit in _SECONDS:
            seconds = float(fraction.group(1)) * _SECONDS[unit]
            return _RESOLUTION_OF_SECONDS.get(int(seconds), "") if seconds == int(seconds) else ""
        if _OTHER_NUMBER.match(text):
            return ""
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    based = _base_and_count(alias, match)
    if based is None:
        return ""
    name, count = based
    return name if count == 1 else _MULTIPLES.get((name, count), "")


def _base_and_count(alias: str, match: re.Match) -> tuple[str, int] | None:
    """(base resolution, multiple) of a matched alias (``6h``: ``("h", 6)``); None for aliases with
    no resolution (milliseconds, business hours...); ValueError for one pandas would not parse."""
    count, base = int(match.group(1) or 1), match.group(2)
    if base.lower() == "ms" and base != "MS":  # "ms" is milliseconds, "MS" month start
        return None
    key = base.upper()
    if key in _NO_RESOLUTION or count < 1:
        return None
    if key not in _BASES:
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    return _BASES[key], count


def season_and_horizon(name: str) -> tuple[int, int]:
    """Seasonal period and default horizon of a resolution name (1 and 14 for none)."""
    return SEASON_AND_HORIZON.get(name, UNKNOWN_SEASON_AND_HORIZON)


def season_of(alias: str) -> int:
    """Seasonal period of a pandas alias. A multiple of a base resolution with no name of its own
    (``2h``, ``6h``, ``2MS``) keeps the base's cycle in fewer steps where the multiple divides it
    (12, 4, 6), as GluonTS' ``get_seasonality``; otherwise (``7h``) there is none: 1."""
    name = resolution_name(alias)
    if name:
        return season_and_horizon(name)[0]
    match = _ALIAS.match(str(alias).strip())
    based = _base_and_count(alias, match) if match else None
    if based is None or based[1] < 2:
        return 1
    season = season_and_horizon(based[0])[0]
    return season // based[1] if season % based[1] == 0 and season > based[1] else 1


def token(name: str) -> int:
    """Resolution token id of a resolution name (0 when it has none)."""
    return FREQ_VOCAB.index(name) if name in FREQ_VOCAB else 0


# Seasonal periods a series of integer steps is tested for, and the resolution each one stands for.
_PERIODS = ((4, "QS"), (7, "D"), (12, "MS"), (24, "h"), (48, "30min"), (52, "W"), (96, "15min"))
NON_SEASONAL = "YS"  # no period found: served like yearly data, whose models expect no calendar season
# Shorter seasons a found period may be a multiple of (a monthly season peaks again at 24 steps);
# a weekly 52 is its own season, never four quarters.
_HARMONIC_OF = {12: (4,), 24: (12,), 48: (12, 24), 96: (12, 24, 48)}
_Z = 2.45  # one-sided 5% over the seven periods tested (Bonferroni); M4's check uses 1.645 for one
_LEAST_AUTOCORRELATION = 0.1  # pooled over many long series a trace of a season is significant, not a season
_MAX_SERIES, _MAX_STEPS = 500, 2048  # what the test reads of a large dataset (enough, and cheap)


def _autocorrelation(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelation at lags 0..``lags`` (FFT; ``x`` already centred)."""
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    acov = np.fft.irfft(spectrum * np.conj(spectrum))[: lags + 1]
    return acov / acov[0] if acov[0] > 0 else np.zeros(lags + 1)


def infer_resolution(series: Sequence[np.ndarray]) -> str:
    """The resolution a dataset of integer steps most likely has, from its seasonal period.

    Every series (and channel; positive ones in logs, where growth and seasons are proportional to
    the level) is tested at the periods above, pooled over the series long enough to show the
    period three times, in two views that keep trends from hiding seasons: the first differences,
    and (where those drown a long smooth season in noise) the levels less a quadratic trend, where
    the peak must also stand above the autocorrelation a quarter period away (a level shift lifts
    every lag). A period is found when, in either view, the mean autocorrelation there is the highest
    within a quarter period either side (within a step from 48 steps on: 52 weeks are not quite a
    year), above the one half a period on for short periods (where a season troughs; smooth data
    ripples), at least 0.1, and significant by a test like the M4 competition's seasonality check:
    Bartlett's variance (over the first lags), pooled over the series, at a level corrected for
    the seven periods tried. The strongest found period wins, unless it is a harmonic of a found
    shorter season that reaches 80% of its strength on the same series (a monthly season peaks
    again at 24 steps). No period found: ``NON_SEASONAL``.
    """
    channels = []  # every channel with 12 observed steps: enough to difference and test the shortest period
    for y in series:
        y = np.asarray(y, dtype=np.float64)
        channels += [c[-_MAX_STEPS:] for c in (y.reshape(len(y), -1).T if len(y) else ())
                     if np.isfinite(c[-_MAX_STEPS:]).sum() >= 12]
    longest = _PERIODS[-1][0] + _PERIODS[-1][0] // 4
    views: dict[str, list[tuple[np.ndarray, int]]] = {"differences": [], "levels": []}  # (autocorrelation, length)
    for channel in channels[:: max(1, len(channels) // _MAX_SERIES)][:_MAX_SERIES]:  # a spread of a large dataset
        seen = np.flatnonzero(np.isfinite(channel))
        y = np.interp(np.arange(seen[0], seen[-1] + 1), seen, channel[seen])  # gaps bridged
        y = np.log(y) if y.min() > 0 else y  # positive data swing in proportion to their level
        t = np.arange(len(y))
        for view, x in (("differences", np.diff(y)), ("levels", y - np.polyval(np.polyfit(t, y, 2), t))):
            views[view].append((_autocorrelation(x - x.mean(), min(longest, len(x) - 1)), len(x)))

    def tested(period: int, view: str) -> tuple[np.ndarray, bool] | None:
        """The mean autocorrelation of the series long enough for ``period`` (their first differences,
        or their levels less a quadratic trend), and whether the period is found there; None when no
        series is long enough."""
        reach, slack = period // 4, (1 if period >= 48 else 0)
        rows = [(r[: period + reach + 1], n) for r, n in views[view] if n + (view == "differences") >= 3 * period]
        if not rows:
            return None
        # Bartlett's variance over the first lags, short of half the period: over all lags below the
        # period, a strong season widens it until the season of a short series cannot pass
        variances = [(1 + 2 * np.sum(r[1:max(2, min(4, period // 2))] ** 2)) / n for r, n in rows]
        r = np.mean([r for r, _ in rows], axis=0)
        peak = r[period - slack: period + slack + 1].max()
        around = np.r_[r[period - reach: period - slack], r[period + slack + 1: period + reach + 1]]
        trough = r[period // 2] if period < 48 else -1.0
        error = _Z * np.sqrt(np.sum(variances)) / len(rows)
        significant = peak > max(error, _LEAST_AUTOCORRELATION)
        if view == "levels":  # a level shift or a bend lifts every lag alike: a season falls a quarter period away
            significant &= peak - max(r[period - reach], r[period + reach]) > error
        return r, bool(peak > max(around.max(), trough) and significant)

    aliases = dict(_PERIODS)
    found = {}
    for period in aliases:
        for view in ("differences", "levels"):
            result = tested(period, view)
            if result is not None and result[1]:
                found[period] = result[0]
                break
    if not found:
        return NON_SEASONAL
    best = max(found, key=lambda period: found[period][period])
    for divisor in _HARMONIC_OF.get(best, ()):
        if divisor in found and found[best][divisor] >= 0.8 * found[best][best]:
            return aliases[divisor]
    return aliases[best]
