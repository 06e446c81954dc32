"""Synthetic series for pretraining: shared vocabulary of every generator.

Every generator is a pure function ``gen(rng, length, **params) -> Sample`` of an explicit
``np.random.Generator``: no global RNG, no clock, so a corpus is reproducible from its seed.
A generator also says which frequency alias its series pretends to have, chosen so that the
seasonal periods it put into the series are natural periods of that frequency (12 <-> "MS",
4 <-> "QS", 24/168 <-> "h", ...). A zero-shot model learns the link between the resolution
token and the periodicity from that.

Modules: ``kernel_synth`` (Gaussian-process compositions), ``structural`` (trend/season/noise,
ARIMA, random walks, counts, cycles; built from ``components``), ``chaos`` (dysts flows and maps),
``mixup`` (TSMixup of corpus series); ``gluonts_artificial`` wraps GluonTS' own artificial
generators. ``tsfm.data.corpus_recipe`` maps recipe names to these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np


class Sample(NamedTuple):
    """One generated series: ``target`` float32 ``[T]`` or ``[C, T]``, its frequency alias,
    and the seasonal periods (in steps) actually put into it (empty when it has none)."""

    target: np.ndarray
    freq: str
    periods: tuple[float, ...] = ()


# Natural seasonal periods (in steps) of each frequency a synthetic series may pretend to have,
# primary period first; the primary is the season of `tsfm.data.freq.freq_info`.
SEASONAL_PERIODS: dict[str, tuple[float, ...]] = {
    "YS": (),
    "QS": (4.0,),
    "MS": (12.0,),
    "W-SUN": (365.25 / 7.0,),
    "D": (7.0, 365.25),
    "B": (5.0, 260.9),
    "h": (24.0, 168.0),
    "30min": (48.0, 336.0),
    "15min": (96.0, 672.0),
    "10min": (144.0, 1008.0),
}

# Longest plausible series per frequency. Real yearly/quarterly series are short, and the cap
# keeps every timestamp inside pandas' Timestamp range (1677-2262).
MAX_LENGTH: dict[str, int] = {
    "YS": 320, "QS": 640, "MS": 1800, "W-SUN": 2600, "D": 20000, "B": 20000,
    "h": 20000, "30min": 20000, "15min": 20000, "10min": 20000,
}

# How often each frequency is drawn for a series that carries seasonality. Monthly, quarterly and
# sub-daily data dominate real forecasting work; yearly has no season so it is absent here.
SEASONAL_FREQ_WEIGHTS: dict[str, float] = {
    "MS": 0.28, "QS": 0.18, "W-SUN": 0.07, "D": 0.10, "B": 0.04,
    "h": 0.14, "30min": 0.11, "15min": 0.05, "10min": 0.03,
}

# How often each frequency labels a series without seasonality (random walks, ARIMA, chaos...).
NONSEASONAL_FREQ_WEIGHTS: dict[str, float] = {
    "YS": 0.40, "QS": 0.12, "MS": 0.12, "W-SUN": 0.08, "D": 0.10, "B": 0.10, "h": 0.08,
}


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw uniform on the log scale: scale-like parameters span orders of magnitude."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    """A key drawn with probability proportional to its weight (keys in insertion order)."""
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def seasonal_freq(
    rng: np.random.Generator, length: int, weights: Mapping[str, float] | None = None
) -> str:
    """A seasonal frequency whose primary period fits at least twice into ``length`` steps.

    Falls back to a non-seasonal label ("YS" or "D") when the series is too short for any.
    """
    weights = SEASONAL_FREQ_WEIGHTS if weights is None else weights
    fit = {
        f: w for f, w in weights.items()
        if w > 0 and SEASONAL_PERIODS[f] and 2 * SEASONAL_PERIODS[f][0] <= length <= MAX_LENGTH[f]
    }
    if not fit:
        return nonseasonal_freq(rng, length)
    return choose(rng, fit)


def nonseasonal_freq(
    rng: np.random.Generator, length: int, weights: Mapping[str, float] | None = None
) -> str:
    """A frequency label for a series without seasonality, plausible for its length."""
    weights = NONSEASONAL_FREQ_WEIGHTS if weights is None else weights
    fit = {f: w for f, w in weights.items() if w > 0 and length <= MAX_LENGTH[f]}
    return choose(rng, fit) if fit else "D"


def usable_periods(freq: str, length: int, min_cycles: float = 2.0) -> tuple[float, ...]:
    """The natural periods of ``freq`` that fit ``min_cycles`` times into ``length`` steps."""
    return tuple(p for p in SEASONAL_PERIODS.get(freq, ()) if p * min_cycles <= length)


def finite_float32(x: np.ndarray) -> np.ndarray:
    """Cast to float32, refusing values float32 cannot hold (a generator bug, never data)."""
    out = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(out)) or np.abs(out).max(initial=0.0) > 1e30:
        raise FloatingPointError("generator produced non-finite or overflowing values")
    return out.astype(np.float32)
