"""Building blocks of the structural generators, in relative units (level about 1).

Smooth paths and AR(1) noise, trends of six shapes with level shifts, Harvey's local linear
trend, drifting seasonal patterns, observation noise, rescaling and outliers; the parameter
ranges are documented once, in ``tsfm.data.synthetic.structural``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.signal import lfilter

from tsfm.data.synthetic import choose, log_uniform


def smooth_path(rng: np.random.Generator, length: int) -> np.ndarray:
    """A random walk rescaled to unit standard deviation: a slow, length-independent wander."""
    path = np.cumsum(rng.standard_normal(length))
    path -= path.mean()
    return path / (path.std() + 1e-12)


def ar1_path(rng: np.random.Generator, length: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with marginal standard deviation ``sd``."""
    e = rng.standard_normal(length) * sd * np.sqrt(1.0 - phi**2)
    e[0] = rng.standard_normal() * sd
    return lfilter([1.0], [1.0, -phi], e)


_TREND_SHAPES: dict[str, float] = {"none": 0.15, "linear": 0.3, "damped": 0.15, "exponential": 0.1,
                                   "logistic": 0.1, "piecewise": 0.2}


def trend_path(rng: np.random.Generator, length: int, total: float | None = None,
           shapes: Mapping[str, float] = _TREND_SHAPES) -> np.ndarray:
    """A trend path starting at 0 (level units): one of six shapes, shifts, stochastic level.

    ``total`` (the change over the series) defaults to a draw from U[-0.8, 1.5]."""
    u = np.arange(length) / max(length - 1, 1)
    total = rng.uniform(-0.8, 1.5) if total is None else total
    kind = choose(rng, shapes)
    if kind == "linear":
        g = total * u
    elif kind == "damped":
        kappa = rng.uniform(1.0, 6.0)
        g = total * (1.0 - np.exp(-kappa * u)) / (1.0 - np.exp(-kappa))
    elif kind == "exponential":
        r = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.5)
        g = total * np.expm1(r * u) / np.expm1(r)
    elif kind == "logistic":
        k, c = rng.uniform(6.0, 20.0), rng.uniform(0.2, 0.8)
        s = 1.0 / (1.0 + np.exp(-k * (u - c)))
        g = total * (s - s[0]) / (s[-1] - s[0] + 1e-12)
    elif kind == "piecewise":
        cuts = np.sort(rng.uniform(0.1, 0.9, int(rng.integers(1, 5))))
        slopes = rng.standard_normal(len(cuts) + 1)
        seg = np.searchsorted(cuts, u)
        g = np.concatenate([[0.0], np.cumsum(slopes[seg][1:] * np.diff(u))])
        g *= abs(total) / (np.abs(g).max() + 1e-12)
    else:
        g = np.zeros(length)
    if rng.random() < 0.2:
        for at in rng.integers(1, max(length - 1, 2), int(rng.integers(1, 4))):
            g[at:] += rng.normal(0.0, 0.2)
    if rng.random() < 0.4:
        g += np.cumsum(rng.standard_normal(length)) * log_uniform(rng, 0.002, 0.03)
    return g


def excursion(path: np.ndarray, total: float) -> np.ndarray:
    """``path`` moved to start at 0 and scaled so that its largest excursion is ``total``."""
    return (path - path[0]) * total / (np.abs(path - path[0]).max() + 1e-12)


def local_linear_trend(rng: np.random.Generator, length: int, low: float, high: float
                        ) -> tuple[np.ndarray, float]:
    """Harvey's local linear trend from 0, its largest excursion ``total`` ~ log-U[low, high].

    The slope is a random walk (w.p. 0.5) or an AR(1) with phi U[0.9, 0.995] (damped), its
    innovations log-U[0.01, 0.3] of the initial slope's scale; level noise log-U[0.001, 0.3]
    of a typical step. Returns the path and ``total``."""
    phi = 1.0 if rng.random() < 0.5 else rng.uniform(0.9, 0.995)
    slope_sd = log_uniform(rng, 0.01, 0.3)
    shocks = rng.standard_normal(length) * slope_sd
    shocks[0] = rng.choice([-1.0, 1.0], p=[0.4, 0.6]) * rng.uniform(0.3, 1.0)
    slope = lfilter([1.0], [1.0, -phi], shocks)
    step = np.abs(slope).mean() + 1e-12
    level = np.cumsum(slope + rng.standard_normal(length) * step * log_uniform(rng, 0.001, 0.3))
    total = log_uniform(rng, low, high)
    return excursion(level, total), total


def seasonal_pattern(rng: np.random.Generator, length: int, period: float) -> np.ndarray:
    """A zero-mean seasonal pattern with max |value| 1 whose shape drifts slowly across cycles."""
    t = np.arange(length, dtype=np.float64)
    if period == round(period) and period >= 3 and rng.random() < 0.4:
        p = int(period)
        profile = rng.standard_normal(p)
        for _ in range(int(rng.integers(0, 4))):  # circular smoothing: from spiky to smooth profiles
            profile = 0.25 * np.roll(profile, 1) + 0.5 * profile + 0.25 * np.roll(profile, -1)
        cycles = profile[None, :] + np.cumsum(
            rng.standard_normal((int(np.ceil(length / period)), p)), axis=0) * rng.uniform(0.0, 0.08)
        s = (cycles - cycles.mean(axis=1, keepdims=True)).reshape(-1)[:length]
    else:
        k_max = int(max(1, min(6, period // 2)))
        k = np.arange(1, int(rng.integers(1, k_max + 1)) + 1)
        coef = rng.standard_normal((2, len(k))) * k ** (-rng.uniform(0.5, 2.0))
        drift = rng.uniform(0.0, 0.3)
        coef_t = coef[:, None, :] * (1.0 + drift * smooth_path(rng, length)[None, :, None])
        theta = 2.0 * np.pi * np.outer(t / period, k)
        s = (np.cos(theta) * coef_t[0]).sum(1) + (np.sin(theta) * coef_t[1]).sum(1)
    return s / (np.abs(s).max() + 1e-12)


def observation_noise(rng: np.random.Generator, length: int, sd: float) -> np.ndarray:
    """Observation noise: Gaussian, Student-t, AR(1) or stochastic volatility."""
    kind = choose(rng, {"gaussian": 0.35, "student_t": 0.2, "ar1": 0.25, "stoch_vol": 0.2})
    if kind == "student_t":
        df = rng.uniform(2.5, 8.0)
        return sd * rng.standard_t(df, length) / np.sqrt(df / (df - 2.0))
    if kind == "ar1":
        return ar1_path(rng, length, rng.uniform(0.2, 0.95), sd)
    if kind == "stoch_vol":
        h = ar1_path(rng, length, rng.uniform(0.9, 0.99), rng.uniform(0.2, 0.8))
        return sd * np.exp(h - h.mean()) * rng.standard_normal(length)
    return sd * rng.standard_normal(length)


def rescale(rng: np.random.Generator, y: np.ndarray, positive: bool) -> np.ndarray:
    """Move a relative-unit series to a random scale (and, if not positive, maybe centre it)."""
    if not positive and rng.random() < 0.3:
        y = y - np.median(y)
    return y * 10.0 ** rng.uniform(-1.0, 4.5)


def add_outliers(rng: np.random.Generator, y: np.ndarray, positive: bool) -> np.ndarray:
    """Isolated spikes or short bursts of 3-10 robust step sizes (whole numbers for counts)."""
    y = y.copy()
    integer = bool(np.all(y == np.round(y)))
    step = 1.4826 * np.median(np.abs(np.diff(y))) + 1e-6 * (np.abs(y).mean() + 1e-12)
    for at in rng.integers(0, len(y), 1 + rng.poisson(len(y) / 400)):
        size = rng.uniform(3.0, 10.0) * step * (1.0 if positive else rng.choice([-1.0, 1.0]))
        size = max(1.0, np.round(size)) if integer and positive else size
        width = 1 if rng.random() < 0.7 else int(rng.integers(2, 6))
        y[at: at + width] += size
    return y
