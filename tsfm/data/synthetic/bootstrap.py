"""Bootstrapped copies of real series (Bergmeir, Hyndman & Benítez 2016, "Bagging exponential
smoothing methods using STL decomposition and Box-Cox transformation").

Recipe: log-transform a strictly positive series (Box-Cox with lambda 0; others stay as they are),
split it into trend, season and remainder, resample the remainder in moving blocks, add trend and
season back and undo the transform. A copy keeps the series' trend and seasonal shape and the
short-range dependence of its noise, with other noise: more windows that look like real data
than the real series alone hold, without their values. A copy stays near the source's range and
keeps its sign. The decomposition is classical rather than STL (numpy only).

The trend is a centred moving average over one season (``NONSEASONAL_SPAN`` steps without a season),
with the ends extended along a fitted line; the season is the mean detrended value at each phase
away from the ends, centred, and the trend is then averaged again from the deseasonalised series.
Blocks are two seasons long (at least ``MIN_BLOCK`` steps).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tsfm.data.freq import freq_info
from tsfm.data.synthetic import Sample, finite_float32

__all__ = ["block_bootstrap", "bootstrap_copy", "bootstrap_sample", "decompose"]

NONSEASONAL_SPAN = 5  # trend window (steps) of a series without a season
MIN_BLOCK = 8
MARGIN_MADS = 3.0  # a copy stays within the source's range widened by this many robust remainder deviations


def moving_average(x: np.ndarray, span: int) -> np.ndarray:
    """Centred moving average over ``span`` steps (an even span averages two shifted windows, as
    the classical 2 x m average does). Near the ends the series is extended by the line fitted to
    its first and last ``span`` steps, so a trend is followed to the ends instead of flattening."""
    if span <= 1 or len(x) < 3:
        return x.copy()
    kernel = np.ones(span)
    if span % 2 == 0:
        kernel = np.convolve(kernel, [0.5, 0.5])
    kernel /= kernel.sum()
    half, k = len(kernel) // 2, min(len(x), span)
    steps = np.arange(k, dtype=np.float64)
    head, tail = np.polyfit(steps, x[:k], 1), np.polyfit(steps, x[-k:], 1)
    left = np.polyval(head, np.arange(-half, 0, dtype=np.float64))
    right = np.polyval(tail, np.arange(k, k + half, dtype=np.float64))
    return np.convolve(np.concatenate([left, x, right]), kernel, mode="valid")


def decompose(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(trend, season, remainder) of a 1-D series with seasonal period ``m``; a series holding
    fewer than two seasons is taken as having none (``m`` 1)."""
    m = m if m > 1 and len(x) >= 2 * m else 1
    trend = moving_average(x, m if m > 1 else min(NONSEASONAL_SPAN, len(x)))
    season = np.zeros_like(x)
    if m > 1:  # phase means where the average saw whole seasons (at least one of each phase)
        detrended, core = x - trend, np.arange(m // 2, len(x) - m // 2)
        phase_means = np.array([detrended[core[core % m == p]].mean() for p in range(m)])
        season = (phase_means - phase_means.mean())[np.arange(len(x)) % m]
        trend = moving_average(x - season, m)  # again without the season: the ends follow the trend
    return trend, season, x - trend - season


def block_bootstrap(rng: np.random.Generator, remainder: np.ndarray, block: int) -> np.ndarray:
    """A moving-block bootstrap of ``remainder``, as long as it: blocks of ``block`` steps from
    random starts, joined, cut at a random offset (so no position is always a block's start)."""
    n = len(remainder)
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=n // block + 2)
    joined = np.concatenate([remainder[s: s + block] for s in starts])
    offset = int(rng.integers(0, block))
    return joined[offset: offset + n]


def bootstrap_copy(rng: np.random.Generator, series: np.ndarray, m: int) -> np.ndarray:
    """One bootstrapped copy of a 1-D series with seasonal period ``m``. It stays within the
    source's range (in log space when logged) widened by ``MARGIN_MADS`` robust deviations of the
    remainder: a remainder moved next to a level shift would otherwise carry a large part of the
    shift along. A nonnegative source gives a nonnegative copy."""
    x = np.asarray(series, dtype=np.float64)
    logged = bool(np.all(x > 0))
    z = np.log(x) if logged else x
    trend, season, remainder = decompose(z, m)
    copy = trend + season + block_bootstrap(rng, remainder, max(2 * m, MIN_BLOCK))
    margin = MARGIN_MADS * 1.4826 * float(np.median(np.abs(remainder - np.median(remainder))))
    copy = np.clip(copy, z.min() - margin, z.max() + margin)
    if logged:
        return np.exp(copy)
    return np.maximum(copy, 0.0) if x.min() >= 0 else copy


def bootstrap_sample(
    rng: np.random.Generator,
    length: int,
    *,
    pool_size: int,
    get: Callable[[int], tuple[np.ndarray, str]],
) -> Sample:
    """A window of ``length`` points (shorter when the drawn series is) of a bootstrapped copy of
    a series drawn from the pool. ``get(i)`` returns pool series ``i`` (1-D, gap-free) and its
    frequency, as for TSMixup."""
    if pool_size <= 0:
        raise ValueError("the bootstrap needs a non-empty pool of series")
    series, freq = get(int(rng.integers(pool_size)))
    copy = bootstrap_copy(rng, series, freq_info(freq).season)
    length = min(length, len(copy))
    start = int(rng.integers(len(copy) - length + 1))
    return Sample(finite_float32(copy[start: start + length]), freq, ())
