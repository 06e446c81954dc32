"""Structural generators: the business, macro and sensor shapes real forecasting data has.

Each public function is ``gen(rng, length) -> Sample``; ``structural`` picks one by weight.
Values are built in relative units (level about 1) and rescaled at the end, so every shape
comes at scales from 0.1 to ~3e4. Parameter ranges (documented once, here):

- ``seasonal_trend``: level x or + season + noise; a seasonal frequency w.p. 0.8. Trend: none /
  linear / damped / exponential / logistic / piecewise-linear with 1-4 changepoints, total
  change U[-0.8, 1.5] (log units when multiplicative); level shifts (p 0.2, 1-3 shifts
  ~N(0, 0.2)); stochastic level (p 0.4, random walk sd log-U[0.002, 0.03]). Season: one or two
  natural periods of the frequency, harmonics
  (1-6, decay k^-U[0.5, 2]) or a random per-step profile (integer periods), amplitude
  U[0.03, 0.5] drifting by up to exp(+-0.4), profile drifting across cycles; multiplicative or
  additive (p 0.5). Noise sd log-U[0.002, 0.15]: Gaussian, Student-t (df U[2.5, 8]), AR(1)
  (phi U[0.2, 0.95]) or stochastic volatility.
- ``arima``: ARIMA(p<=3, d in {0,1,2} w.p. .4/.45/.15, q<=2) with stationary AR roots (modulus
  <= 0.97) and invertible MA roots; p 0.35 of a seasonal part (SAR U[0.3, 0.9] or seasonal
  differencing with SMA U[-0.8, 0]) on the frequency's primary period.
- ``random_walk`` (w.p. .35/.45/.2): arithmetic (drift ~N(0, 0.2) step sds, Gaussian or t
  steps), geometric (stock-like: daily vol log-U[0.004, 0.04], stochastic volatility, drift
  ~N(2e-4, 5e-4)), or with compound-Poisson level jumps (rate U[0.002, 0.02]).
- ``intermittent``: Poisson or negative-binomial (r log-U[0.3, 10]) counts around a latent
  log-rate (base rate log-U[0.02, 30], AR(1) and optional seasonal modulation), or w.p. 0.3
  Croston-style demand (occurrence U[0.05, 0.6], size 1 + Poisson(log-U[0.5, 20])).
- ``positive``: level x exp(sigma z), z an AR(1) (phi U[0.5, 0.999]) / random walk / smooth path,
  sigma U[0.05, 1.2], optional log-seasonality.
- ``quasi_cycle``: sunspot-like asymmetric cycles (period jitter 5-15 %, per-cycle amplitude
  log-N(0, 0.35)), lynx-like log-scale cycles (log range U[1.5, 6]) or AR(2) stochastic cycles
  (root modulus U[0.85, 0.99]); mean period by frequency (years 4-15, quarters 12-48, ...).
- ``free_cycle``: one or two cycles whose periods are not calendar periods (log-U[2.5, L/2.5]
  steps, at most 200, mostly non-integer: sunspot- or business-cycle-like), labelled yearly
  (daily past the yearly length cap, so recipes keep free cycles <= 320 steps),
  harmonic shapes drifting slowly, amplitude envelope, optional trend, noise as in
  ``seasonal_trend``. Calendar-tied seasons alone taught the model to damp every other period:
  ttm-96 forecast a clean sine of period 11 or 16 worse than the naive forecast.
- ``growth``: a trend that dominates the series: total change +-log-U[0.3, 3] (rising w.p.
  0.65; log units when multiplicative, w.p. 0.5; a fall at most -2 multiplicative, -0.9
  additive), shapes linear / damped / exponential / piecewise (.4/.15/.2/.25) with
  ``seasonal_trend``'s level shifts and stochastic level; one natural season w.p. 0.6
  (amplitude U[0.03, 0.4]); noise sd |change| x log-U[0.003, 0.3], from negligible to larger
  than the trend's steps. Recipes give it window-like lengths (growth_long_heldout: 512-2048).
- ``local_trend``: Harvey's local linear trend, smooth and integrated: a slope that persists
  (random walk w.p. 0.5, else AR(1) phi U[0.9, 0.995]) with innovations log-U[0.01, 0.3],
  level noise log-U[0.001, 0.3] and observation noise log-U[0.001, 1] of a step, total change
  log-U[0.2, 3] (log units w.p. 0.3), a natural season w.p. 0.4 (amplitude U[0.02, 0.3]).
- ``evolving_season``: Harvey's basic structural model: ``local_trend``'s level (w.p. 0.7, total
  log-U[0.05, 2]) or a random walk under a season whose per-step pattern is a random walk across
  cycles (total drift log-U[0.3, 2] of its size) and whose amplitude trends (exp(U[-1.5, 1.5]
  t/T), w.p. 0.6); amplitude U[0.05, 0.5], multiplicative w.p. 0.35.
- ``solar``: sub-daily clear-sky bump (zero at night, day fraction U[0.3, 0.7]) times an annual
  envelope and a cloud process.
- Any kind gets spikes/outliers with probability ``outlier_prob`` (default 0.08).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy.signal import lfilter

from tsfm.data.synthetic import (
    MAX_LENGTH,
    SEASONAL_PERIODS,
    Sample,
    choose,
    finite_float32,
    log_uniform,
    nonseasonal_freq,
    seasonal_freq,
    usable_periods,
)
from tsfm.data.synthetic.components import (
    add_outliers,
    ar1_path,
    excursion,
    local_linear_trend,
    observation_noise,
    rescale,
    seasonal_pattern,
    smooth_path,
    trend_path,
)

__all__ = [
    "STRUCTURAL_KINDS", "structural", "seasonal_trend", "arima", "random_walk", "intermittent",
    "positive", "quasi_cycle", "free_cycle", "growth", "local_trend", "evolving_season", "solar",
]


# ----------------------------------------------------------------------------- generator kinds
def seasonal_trend(rng: np.random.Generator, length: int) -> Sample:
    """Trend x season x noise (multiplicative) or trend + season + noise (additive)."""
    freq = seasonal_freq(rng, length) if rng.random() < 0.8 else nonseasonal_freq(rng, length)
    periods = usable_periods(freq, length, 2.0)
    if len(periods) > 1 and rng.random() < 0.5:
        periods = periods[:1]
    multiplicative = rng.random() < 0.5
    g = trend_path(rng, length)
    amp = rng.uniform(0.03, 0.5) * np.exp(rng.uniform(0.0, 0.4) * smooth_path(rng, length))
    season = np.zeros(length)
    for i, p in enumerate(periods):
        season += (1.0 if i == 0 else rng.uniform(0.2, 1.0)) * seasonal_pattern(rng, length, p)
    season /= max(np.abs(season).max(), 1.0)
    noise = observation_noise(rng, length, log_uniform(rng, 0.002, 0.15))
    if multiplicative:
        y = np.exp(g) * np.clip(1.0 + np.minimum(amp, 0.9) * season, 0.05, None) * np.exp(noise)
    else:
        y = 1.0 + g + amp * season + noise
    return Sample(rescale(rng, y, multiplicative), freq, tuple(periods))


def _arma(rng: np.random.Generator, length: int, p: int, q: int, burn: int = 200) -> np.ndarray:
    """A stationary, invertible ARMA(p, q) path from random roots inside the unit circle."""

    def roots(n: int, max_mod: float) -> np.ndarray:
        out: list[complex] = []
        while len(out) < n:
            if n - len(out) >= 2 and rng.random() < 0.4:
                r, th = rng.uniform(0.3, max_mod), rng.uniform(0.05, np.pi)
                out += [r * np.exp(1j * th), r * np.exp(-1j * th)]
            else:
                out.append(rng.uniform(-max_mod, max_mod))
        return np.asarray(out)

    a = np.real(np.poly(roots(p, 0.97))) if p else np.array([1.0])
    b = np.real(np.poly(roots(q, 0.9))) if q else np.array([1.0])
    return lfilter(b, a, rng.standard_normal(length + burn))[burn:]


def arima(rng: np.random.Generator, length: int) -> Sample:
    """ARIMA(p, d, q), sometimes with a seasonal AR or seasonal-difference part."""
    seasonal = rng.random() < 0.35
    freq = seasonal_freq(rng, length) if seasonal else nonseasonal_freq(rng, length)
    period = usable_periods(freq, length, 3.0)[:1]
    p, q = int(rng.integers(0, 4)), int(rng.integers(0, 3))
    d = int(rng.choice(3, p=[0.4, 0.45, 0.15]))
    x = _arma(rng, length + 400, p, q, burn=0)
    periods: tuple[float, ...] = ()
    if seasonal and period and period[0] == round(period[0]):
        s = int(period[0])
        if rng.random() < 0.5:  # seasonal AR: (1 - Phi B^s) x_t = w_t
            phi = rng.uniform(0.3, 0.9)
            x = lfilter([1.0], np.r_[1.0, np.zeros(s - 1), -phi], x)
        else:  # airline-like: seasonal MA then seasonal integration
            theta = rng.uniform(-0.8, 0.0)
            x = lfilter(np.r_[1.0, np.zeros(s - 1), theta], [1.0], x)
            x = lfilter([1.0], np.r_[1.0, np.zeros(s - 1), -1.0], x)
            d = min(d, 1)
        periods = (float(s),)
    x = x[400:]
    drift = rng.normal(0.0, 0.3) if d >= 1 and rng.random() < 0.5 else 0.0
    for _ in range(d):
        x = np.cumsum(x + drift)
        drift = 0.0
    x = x / (np.std(np.diff(x)) + 1e-12) * log_uniform(rng, 0.005, 0.1)
    return Sample(rescale(rng, 1.0 + x, False), freq, periods)


def random_walk(rng: np.random.Generator, length: int) -> Sample:
    """Arithmetic, geometric (stock price) or jump random walks."""
    kind = choose(rng, {"arithmetic": 0.35, "geometric": 0.45, "jump": 0.2})
    if kind == "geometric":
        freq = choose(rng, {"B": 0.5, "D": 0.2, "other": 0.3})
        freq = nonseasonal_freq(rng, length) if freq == "other" else freq
        vol = log_uniform(rng, 0.004, 0.04) * np.exp(
            ar1_path(rng, length, rng.uniform(0.95, 0.995), rng.uniform(0.1, 0.4)))
        returns = rng.normal(2e-4, 5e-4) + vol * rng.standard_t(5.0, length) / np.sqrt(5.0 / 3.0)
        y = log_uniform(rng, 1.0, 2000.0) * np.exp(np.cumsum(returns))
        return Sample(y, freq, ())
    freq = nonseasonal_freq(rng, length)
    steps = rng.standard_t(4.0, length) if rng.random() < 0.3 else rng.standard_normal(length)
    steps = steps + rng.normal(0.0, 0.2)
    if kind == "jump":
        jumps = rng.random(length) < rng.uniform(0.002, 0.02)
        steps = steps + jumps * rng.normal(0.0, 5.0, length)
    y = np.cumsum(steps) * log_uniform(rng, 0.002, 0.05)
    return Sample(rescale(rng, 1.0 + y, False), freq, ())


def intermittent(rng: np.random.Generator, length: int) -> Sample:
    """Counts: Poisson / negative-binomial around a latent rate, or Croston-style demand."""
    seasonal = rng.random() < 0.4
    freq = seasonal_freq(rng, length, {"D": 0.4, "W-SUN": 0.2, "MS": 0.3, "h": 0.1}) if seasonal \
        else choose(rng, {"D": 0.4, "W-SUN": 0.25, "MS": 0.2, "B": 0.15})
    if rng.random() < 0.3:
        occurs = rng.random(length) < rng.uniform(0.05, 0.6)
        y = occurs * (1 + rng.poisson(log_uniform(rng, 0.5, 20.0), length))
        return Sample(y.astype(np.float64), freq, ())
    log_rate = np.log(log_uniform(rng, 0.02, 30.0)) + ar1_path(rng, length, rng.uniform(0.5, 0.99),
                                                           rng.uniform(0.05, 0.6))
    log_rate += trend_path(rng, length) * 0.5
    periods = usable_periods(freq, length, 2.0)[:1] if seasonal else ()
    for p in periods:
        log_rate += rng.uniform(0.1, 1.0) * seasonal_pattern(rng, length, p)
    rate = np.exp(np.clip(log_rate, -10.0, 12.0))
    if rng.random() < 0.5:
        r = log_uniform(rng, 0.3, 10.0)
        rate = rate * rng.gamma(r, 1.0 / r, length)
    return Sample(rng.poisson(rate).astype(np.float64), freq, tuple(periods))


def positive(rng: np.random.Generator, length: int) -> Sample:
    """A log-normal-like series: level x exp(sigma z) of a latent path z."""
    seasonal = rng.random() < 0.5
    freq = seasonal_freq(rng, length) if seasonal else nonseasonal_freq(rng, length)
    kind = choose(rng, {"ar1": 0.4, "walk": 0.3, "smooth": 0.3})
    if kind == "ar1":
        z = ar1_path(rng, length, rng.uniform(0.5, 0.999), 1.0)
    elif kind == "walk":
        z = np.cumsum(rng.standard_normal(length)) / np.sqrt(length)
    else:
        z = smooth_path(rng, length)
    z = rng.uniform(0.05, 1.2) * (z - z.mean()) / (z.std() + 1e-12)
    periods = usable_periods(freq, length, 2.0)[:1] if seasonal else ()
    for p in periods:
        z += rng.uniform(0.05, 0.6) * seasonal_pattern(rng, length, p)
    return Sample(rescale(rng, np.exp(z), True), freq, tuple(periods))


# Trend shapes of ``growth``: always a trend (no "none"), mostly ones that keep their slope.
_GROWTH_SHAPES: dict[str, float] = {"linear": 0.4, "damped": 0.15, "exponential": 0.2, "piecewise": 0.25}


def growth(rng: np.random.Generator, length: int) -> Sample:
    """A trend that dominates the window (co2's rise under its season, air passengers, a
    fertility decline, a noisy line).

    ``seasonal_trend`` spreads a change of at most 1.5 over the whole series, so a model's window
    of a long series barely slopes, and the TTMs learnt to hold the last level. Here the change
    is log-U[0.3, 3] (either sign, log units when multiplicative) over a series of window-like
    length, the noise ranges from negligible to larger than the trend's steps, and a season
    rides on it w.p. 0.6 (growing with the level when multiplicative). ttm-512's phase 5 trains
    on it (co2_weekly's error fell by a quarter to a third); for ttm-96 the trials moved single
    windows both ways and did not pay (CHANGELOG.md, 2026-12-02)."""
    freq = seasonal_freq(rng, length) if rng.random() < 0.6 else nonseasonal_freq(rng, length)
    periods = usable_periods(freq, length, 2.0)[:1]
    multiplicative = rng.random() < 0.5
    total = float(rng.choice([-1.0, 1.0], p=[0.35, 0.65])) * log_uniform(rng, 0.3, 3.0)
    if multiplicative:
        total = max(total, -2.0)  # a decline to ~14 %, not to zero
    else:
        total = max(total, -0.9)  # additive level 1 + trend stays positive before the noise
    g = trend_path(rng, length, total=total, shapes=_GROWTH_SHAPES)
    season = np.zeros(length)
    if periods:
        amp = rng.uniform(0.03, 0.4) * np.exp(rng.uniform(0.0, 0.3) * smooth_path(rng, length))
        season = amp * seasonal_pattern(rng, length, periods[0])
    noise = observation_noise(rng, length, abs(total) * log_uniform(rng, 0.003, 0.3))
    if multiplicative:
        y = np.exp(g + noise) * np.clip(1.0 + np.minimum(season, 0.9), 0.05, None)
    else:
        y = 1.0 + g + season + noise
    return Sample(rescale(rng, y, multiplicative), freq, tuple(periods))


# Mean cycle length range (in steps) of quasi-cycles per frequency label.
_CYCLE_RANGE: dict[str, tuple[float, float]] = {
    "YS": (4.0, 15.0), "QS": (12.0, 48.0), "MS": (24.0, 170.0), "W-SUN": (26.0, 300.0),
}


def _cycle_phase(rng: np.random.Generator, length: int, mean_period: float) -> tuple[np.ndarray, np.ndarray]:
    """Phase in [0, 1) within the current cycle and the cycle index, cycles of jittered length."""
    jitter = rng.uniform(0.05, 0.15)
    n = int(2 * length / mean_period) + 3  # cycles are at least half the mean long
    lengths = np.maximum(mean_period * (1.0 + jitter * rng.standard_normal(n)), 0.5 * mean_period)
    edges = np.concatenate([[0.0], np.cumsum(lengths)]) - rng.uniform(0.0, lengths[0])
    t = np.arange(length, dtype=np.float64)
    k = np.searchsorted(edges, t, side="right") - 1
    return (t - edges[k]) / lengths[k], k


def quasi_cycle(rng: np.random.Generator, length: int) -> Sample:
    """Sunspot-like, lynx-like or AR(2) cycles whose period wanders from cycle to cycle."""
    freq = nonseasonal_freq(rng, length)
    low, high = _CYCLE_RANGE.get(freq, (8.0, 400.0))
    period = float(np.clip(log_uniform(rng, low, high), 3.0, max(3.0, length / 2.5)))
    kind = choose(rng, {"sunspot": 0.4, "lynx": 0.3, "ar2": 0.3})
    if kind == "ar2":
        r, th = rng.uniform(0.85, 0.99), 2.0 * np.pi / period
        x = lfilter([1.0], np.real(np.poly([r * np.exp(1j * th), r * np.exp(-1j * th)])),
                    rng.standard_normal(length + 300))[300:]
        x /= x.std() + 1e-12
        periods: tuple[float, ...] = ()
        if freq == "MS" and length >= 36 and rng.random() < 0.5:  # El Nino: cycle + annual season
            x += rng.uniform(0.3, 1.5) * seasonal_pattern(rng, length, 12.0)
            periods = (12.0,)
        y = 1.0 + x * rng.uniform(0.05, 0.5)
        return Sample(rescale(rng, y, False), freq, periods)
    u, k = _cycle_phase(rng, length, period)
    amp = np.exp(0.35 * rng.standard_normal(k.max() + 1))[k]
    if kind == "sunspot":
        shape = np.sin(np.pi * u ** rng.uniform(0.55, 1.0)) ** rng.uniform(1.0, 2.5)
        y = amp * shape + rng.uniform(0.0, 0.1)
        y = np.maximum(y + rng.uniform(0.02, 0.1) * np.sqrt(y + 0.02) * rng.standard_normal(length), 0.0)
        return Sample(rescale(rng, y, True), freq, ())
    x = np.sin(2 * np.pi * u) + rng.uniform(0.0, 0.4) * np.sin(4 * np.pi * u + rng.uniform(0, 2 * np.pi))
    x = x * amp + ar1_path(rng, length, rng.uniform(0.0, 0.7), rng.uniform(0.05, 0.3))
    y = np.exp(rng.uniform(1.5, 6.0) / 2.0 * x / (np.abs(x).max() + 1e-12))
    return Sample(rescale(rng, y, True), freq, ())


# The frequency labels a free cycle carries: yearly, where real data has cycles at free periods
# (sunspots, lynx, business cycles) and no calendar season competes. Labelling them with seasonal
# frequencies too (monthly, hourly...) cost the model its calendar prior: forecasts of short
# seasonal series got worse by as much as the cycles gained (benchmarks/results/cycles.md).
_FREE_CYCLE_FREQ_WEIGHTS: dict[str, float] = {"YS": 1.0}


def free_cycle(rng: np.random.Generator, length: int) -> Sample:
    """Yearly cycles at periods no calendar has (the 11-year sunspot cycle, 16 steps, ...)."""
    fit = {f: w for f, w in _FREE_CYCLE_FREQ_WEIGHTS.items() if length <= MAX_LENGTH[f]}
    freq = choose(rng, fit) if fit else "D"
    high = max(3.0, min(length / 2.5, 200.0))
    periods = [log_uniform(rng, 2.5, high)]
    if rng.random() < 0.3:
        periods.append(log_uniform(rng, 2.5, high))
    x = np.zeros(length)
    for i, p in enumerate(periods):
        amp = 1.0 if i == 0 else rng.uniform(0.2, 0.8)
        x += amp * seasonal_pattern(rng, length, p if rng.random() < 0.85 else float(round(p)))
    envelope = np.exp(rng.uniform(0.0, 0.3) * smooth_path(rng, length))  # slowly changing amplitude
    multiplicative = rng.random() < 0.4
    a = rng.uniform(0.05, 0.6)
    noise = observation_noise(rng, length, a * log_uniform(rng, 0.01, 0.5))
    g = trend_path(rng, length) if rng.random() < 0.5 else np.zeros(length)
    if multiplicative:
        y = np.exp(g + a * envelope * x + noise)
    else:
        y = 1.0 + g + a * envelope * x + noise
    return Sample(rescale(rng, y, multiplicative), freq, ())


def solar(rng: np.random.Generator, length: int) -> Sample:
    """Sub-daily solar power: clear-sky day bumps, zero at night, clouds, a slow annual swing."""
    freq = choose(rng, {"30min": 0.4, "h": 0.3, "15min": 0.2, "10min": 0.1})
    day = SEASONAL_PERIODS[freq][0]
    t = np.arange(length, dtype=np.float64)
    day_fraction = rng.uniform(0.3, 0.7)
    phase = (t / day + rng.uniform(0.0, 1.0)) % 1.0
    bump = np.clip(np.cos(np.pi * (phase - 0.5) / day_fraction), 0.0, None)
    bump[np.abs(phase - 0.5) > day_fraction / 2.0] = 0.0
    bump **= rng.uniform(1.0, 2.0)
    annual = 1.0 + rng.uniform(0.0, 0.4) * np.sin(2 * np.pi * t / (365.25 * day) + rng.uniform(0, 2 * np.pi))
    cloud = 1.0 / (1.0 + np.exp(-ar1_path(rng, length, rng.uniform(0.8, 0.99), rng.uniform(0.5, 2.5)) - 1.5))
    y = bump * annual * cloud
    return Sample(rescale(rng, y, True), freq, (day,))


def local_trend(rng: np.random.Generator, length: int) -> Sample:
    """Harvey's local linear trend: a smooth path whose slope persists and drifts (fertility
    declines, money stocks, population), with little noise, under a season w.p. 0.4.

    ``growth`` draws a trend *shape* over the series, so at any cut its slope may be about to
    bend; real macro series are integrated, and their last slope is the best guess of the next.
    The slope is a random walk (w.p. 0.5) or an AR(1) with phi U[0.9, 0.995] (damped), its
    innovations log-U[0.01, 0.3] of the initial slope's scale; level noise log-U[0.001, 0.3] and
    observation noise log-U[0.001, 1] of a typical step; total change log-U[0.2, 3] (either sign;
    log units when multiplicative, w.p. 0.3)."""
    freq = seasonal_freq(rng, length) if rng.random() < 0.4 else nonseasonal_freq(rng, length)
    periods = usable_periods(freq, length, 2.0)[:1]
    g, total = local_linear_trend(rng, length, 0.2, 3.0)
    noise_sd = total / length * log_uniform(rng, 0.001, 1.0)
    season = np.zeros(length)
    if periods:
        season = rng.uniform(0.02, 0.3) * seasonal_pattern(rng, length, periods[0])
    if rng.random() < 0.3:  # multiplicative: the level in log units, a season growing with it
        y = np.exp(np.clip(g, -2.0, None) + observation_noise(rng, length, noise_sd)) * (1.0 + season)
        return Sample(rescale(rng, y, True), freq, tuple(periods))
    y = 1.0 + g + season * total + observation_noise(rng, length, noise_sd)
    return Sample(rescale(rng, y, False), freq, tuple(periods))


def _evolving_pattern(rng: np.random.Generator, length: int, period: float) -> np.ndarray:
    """A zero-mean season whose per-step pattern is a random walk across cycles (a dummy
    seasonal of Harvey's model, smoothed circularly for long periods); initial max |value| 1."""
    p = max(int(round(period)), 2)
    cycles = int(np.ceil(length / p))
    first = seasonal_pattern(rng, p, float(p))
    drift = log_uniform(rng, 0.3, 2.0) / np.sqrt(cycles)
    steps = rng.standard_normal((cycles, p))
    for _ in range(int(rng.integers(0, 3)) + (2 if p > 12 else 0)):
        steps = 0.25 * np.roll(steps, 1, axis=1) + 0.5 * steps + 0.25 * np.roll(steps, -1, axis=1)
    steps *= drift / (steps.std() + 1e-12)
    pattern = first[None, :] + np.cumsum(steps, axis=0) - steps[0]
    pattern -= pattern.mean(axis=1, keepdims=True)
    return pattern.reshape(-1)[:length]


def evolving_season(rng: np.random.Generator, length: int) -> Sample:
    """Harvey's basic structural model: a local trend or level under a season whose pattern
    evolves from cycle to cycle, its amplitude trending w.p. 0.6, so the latest season, not the
    average one, is the best guess of the next (German inflation's shrinking quarterly swing,
    wine and passenger seasons growing with sales).

    ``seasonal_trend``'s and ``local_trend``'s seasons barely drift, so the TTMs learnt to forecast
    the average season of their context: a quarterly season that shrank from 1.5 to 0.6 was
    forecast 45 % too large. The pattern's total drift is log-U[0.3, 2] of its initial size, the
    amplitude envelope exp(U[-1.5, 1.5] t/T), the level ``local_linear_trend`` (total change
    log-U[0.05, 2], w.p. 0.7) or a random walk (log-U[0.05, 1]); season amplitude U[0.05, 0.5],
    noise sd log-U[0.02, 0.3] of it; multiplicative (log units) w.p. 0.35."""
    freq = seasonal_freq(rng, length)
    periods = usable_periods(freq, length, 2.0)[:1]
    if rng.random() < 0.7:
        g, _ = local_linear_trend(rng, length, 0.05, 2.0)
    else:
        g = excursion(np.cumsum(rng.standard_normal(length)), log_uniform(rng, 0.05, 1.0))
    amp = rng.uniform(0.05, 0.5)
    season = np.zeros(length)
    if periods:
        season = _evolving_pattern(rng, length, periods[0])
        if rng.random() < 0.6:
            season *= np.exp(rng.uniform(-1.5, 1.5) * np.arange(length) / length)
    noise = observation_noise(rng, length, amp * log_uniform(rng, 0.02, 0.3))
    if rng.random() < 0.35:
        y = np.exp(np.clip(g, -2.0, None) + noise) * np.clip(1.0 + amp * season, 0.05, None)
        return Sample(rescale(rng, y, True), freq, tuple(periods))
    return Sample(rescale(rng, 1.0 + g + amp * season + noise, False), freq, tuple(periods))


STRUCTURAL_KINDS: dict[str, Callable[[np.random.Generator, int], Sample]] = {
    "seasonal_trend": seasonal_trend,
    "arima": arima,
    "random_walk": random_walk,
    "intermittent": intermittent,
    "positive": positive,
    "quasi_cycle": quasi_cycle,
    "free_cycle": free_cycle,
    "growth": growth,
    "solar": solar,
    "local_trend": local_trend,
    "evolving_season": evolving_season,
}

DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "seasonal_trend": 0.40, "arima": 0.14, "random_walk": 0.12, "intermittent": 0.08,
    "positive": 0.08, "quasi_cycle": 0.12, "solar": 0.06,
}


def structural(
    rng: np.random.Generator,
    length: int,
    *,
    kinds: Mapping[str, float] | None = None,
    outlier_prob: float = 0.08,
) -> Sample:
    """One series of a kind drawn from ``kinds`` (name -> weight), with occasional outliers."""
    weights = DEFAULT_KIND_WEIGHTS if kinds is None else kinds
    unknown = set(weights) - set(STRUCTURAL_KINDS)
    if unknown:
        raise ValueError(f"unknown structural kinds {sorted(unknown)}; known: {sorted(STRUCTURAL_KINDS)}")
    sample = STRUCTURAL_KINDS[choose(rng, weights)](rng, length)
    y = np.asarray(sample.target, dtype=np.float64)
    if rng.random() < outlier_prob:
        y = add_outliers(rng, y, positive=bool(np.all(y >= 0)))
    return Sample(finite_float32(y), sample.freq, sample.periods)
