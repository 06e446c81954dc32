"""What a frequency means to a forecaster, from its pandas alias, without pandas.

One table for the package and the edge runtime: the resolution name of an alias (``"QS-OCT"``
is quarterly, ``"60min"`` hourly), its seasonal period and default horizon, and the resolution
token TTM reads. Unlike granite-tsfm's mapping, monthly, quarterly and yearly data get tokens of
their own.
"""

from __future__ import annotations

import re

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
}
# pandas aliases that are valid but have no resolution (token 0).
_NO_RESOLUTION = {
    "L", "U", "US", "N", "NS", "C", "BH", "CBH", "BM", "BME", "BMS", "CBM", "CBME", "CBMS", "SM", "SME",
    "SMS", "BQ", "BQE", "BQS", "BA", "BAS", "BY", "BYE", "BYS", "WOM",
}
# (base, multiple) -> resolution name: 60 minutes is hourly, 3 months quarterly...
_MULTIPLES = {
    ("s", 60): "min", ("min", 60): "h", ("min", 5): "5min", ("min", 10): "10min", ("min", 15): "15min",
    ("min", 30): "30min", ("h", 24): "D", ("D", 7): "W", ("M", 3): "Q", ("M", 12): "Y", ("Q", 4): "Y",
}
_ALIAS = re.compile(r"^\+?(\d*)([A-Za-z]+)(?:-[A-Za-z0-9]+)?$")
_OTHER_NUMBER = re.compile(r"^[+-]?\d*\.?\d+[A-Za-z]+(?:-[A-Za-z0-9]+)?$")  # "1.5h", "-1D": valid, no resolution


def resolution_name(alias: str) -> str:
    """Resolution name of a pandas frequency alias (``"QS-OCT"`` -> ``"Q"``; ``""`` when it has none).

    An alias pandas would not parse either raises ``ValueError``.
    """
    text = str(alias).strip()
    match = _ALIAS.match(text)
    if match is None:
        if _OTHER_NUMBER.match(text):
            return ""
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    count, base = int(match.group(1) or 1), match.group(2)
    if base.lower() == "ms" and base != "MS":  # "ms" is milliseconds, "MS" month start
        return ""
    key = base.upper()
    if key in _NO_RESOLUTION or count < 1:
        return ""
    if key not in _BASES:
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    name = _BASES[key]
    return name if count == 1 else _MULTIPLES.get((name, count), "")


def season_and_horizon(name: str) -> tuple[int, int]:
    """Seasonal period and default horizon of a resolution name (1 and 14 for none)."""
    return SEASON_AND_HORIZON.get(name, UNKNOWN_SEASON_AND_HORIZON)


def token(name: str) -> int:
    """Resolution token id of a resolution name (0 when it has none)."""
    return FREQ_VOCAB.index(name) if name in FREQ_VOCAB else 0
