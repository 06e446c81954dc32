"""GluonTS' own artificial generators as a corpus generator kind.

``gluonts_artificial`` uses GluonTS' recipe DSL (``LinearTrend``, ``SmoothSeasonality``, ``ARp``,
``RandomChangepoints``, ``BinaryMarkovChain``) and ``ComplexSeasonalTimeSeries``; those draw from
numpy's global RNG, so it is seeded from ``rng`` and restored afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from tsfm.data.synthetic import Sample, finite_float32, log_uniform, seasonal_freq, usable_periods

# GluonTS' ComplexSeasonalTimeSeries only knows these frequency strings; map them to ours.
_GLUONTS_FREQ = {"M": "MS", "W": "W-SUN", "D": "D", "H": "h"}


def _with_global_seed(seed: int, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Run ``fn`` with numpy's global RNG seeded, leaving the caller's global state untouched."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    finally:
        np.random.set_state(state)


def gluonts_artificial(
    rng: np.random.Generator, length: int, *, complex_seasonal_prob: float = 0.25
) -> Sample:
    """A series from GluonTS' artificial generators (recipe DSL or ComplexSeasonalTimeSeries)."""
    from gluonts.dataset.artificial import ComplexSeasonalTimeSeries
    from gluonts.dataset.artificial import recipe as rcp

    seed = int(rng.integers(2**31 - 1))
    if rng.random() < complex_seasonal_prob:
        fits = [f for f in _GLUONTS_FREQ if usable_periods(_GLUONTS_FREQ[f], length, 2.0)]
        gl_freq = fits[int(rng.integers(len(fits)))] if fits else "D"
        freq = _GLUONTS_FREQ[gl_freq]
        period = int(round(usable_periods(freq, length, 1.0)[0])) if fits else 7
        low = rng.uniform(-1000.0, 1000.0)
        options = dict(
            num_series=1, prediction_length=1, freq_str=gl_freq, length_low=max(length, 2),
            length_high=max(length, 2) + 1, min_val=low, max_val=low + log_uniform(rng, 1.0, 1e4),
            is_noise=bool(rng.random() < 0.8), seasonality=period,
        )

        def make() -> np.ndarray:
            dataset = ComplexSeasonalTimeSeries(**options)
            return np.asarray(dataset.make_timeseries(seed=seed)[0]["target"], dtype=np.float64)

        y = _with_global_seed(seed, make)
        return Sample(y[:length].astype(np.float32), freq, (float(period),))

    freq = seasonal_freq(rng, length)
    periods = usable_periods(freq, length, 2.0)[:1]
    terms = [rcp.LinearTrend(slope=rng.normal(0.0, 2.0)),
             rcp.ARp(phi=[rng.uniform(0.1, 0.95)], sigma=log_uniform(rng, 0.01, 0.5))]
    for p in periods:
        terms.append(rcp.SmoothSeasonality(period=p, phase=rng.uniform(0, p)) * rng.uniform(0.2, 3.0))
    if rng.random() < 0.4:
        terms.append(rcp.RandomChangepoints(int(rng.integers(1, 5))) * rng.normal(0.0, 1.0))
    target = terms[0]
    for term in terms[1:]:
        target = target + term
    if rng.random() < 0.2:  # on/off regimes (machine running / idle)
        target = target * rcp.BinaryMarkovChain(one_to_zero=rng.uniform(0.01, 0.1),
                                                zero_to_one=rng.uniform(0.05, 0.3))
    offset = rng.uniform(0.0, 10.0)
    y = _with_global_seed(seed, lambda: np.asarray(rcp.evaluate(target + offset, length), float))
    return Sample(finite_float32(y * log_uniform(rng, 0.1, 1e3)), freq, tuple(periods))
