"""Synthetic generators: output contract, determinism, seasonality, KernelSynth parity, chaos guards."""

from __future__ import annotations

import numpy as np
import pytest

from tsfm.data.freq import freq_info
from tsfm.data.synthetic import SEASONAL_PERIODS, Sample
from tsfm.data.synthetic import chaos as chaos_mod
from tsfm.data.synthetic.bootstrap import block_bootstrap, bootstrap_copy, bootstrap_sample, decompose
from tsfm.data.synthetic.gluonts_artificial import gluonts_artificial
from tsfm.data.synthetic.kernel_synth import (
    RBF,
    Constant,
    DotProduct,
    ExpSineSquared,
    RationalQuadratic,
    White,
    kernel_synth,
    sample_kernel,
)
from tsfm.data.synthetic.mixup import mix, tsmixup
from tsfm.data.synthetic.structural import STRUCTURAL_KINDS, structural

LENGTHS = (20, 37, 64, 150, 400, 1100)
SYSTEMS = ["Lorenz", "Rossler", "Henon"]


def _check_sample(sample: Sample, length: int) -> None:
    assert isinstance(sample, Sample)
    assert sample.target.dtype == np.float32
    assert sample.target.shape[-1] == length
    assert np.all(np.isfinite(sample.target))
    assert sample.freq in SEASONAL_PERIODS, sample.freq
    natural = SEASONAL_PERIODS[sample.freq]
    for p in sample.periods:  # every period put in is a natural period of the label, or a harmonic of one
        assert any(abs(P / p - round(P / p)) < 1e-9 for P in natural), (sample.freq, p)
    if natural and sample.periods:
        assert round(natural[0]) == freq_info(sample.freq).season


@pytest.mark.parametrize("kind", sorted(STRUCTURAL_KINDS))
def test_structural_kinds_contract(kind: str) -> None:
    rng = np.random.default_rng(7)
    for length in LENGTHS * 4:
        s = STRUCTURAL_KINDS[kind](rng, length)
        _check_sample(Sample(np.asarray(s.target, dtype=np.float32), s.freq, s.periods), length)
        if kind == "seasonal_trend" and s.periods:
            assert 2 * s.periods[0] <= length  # a season is only put where two cycles fit


def test_structural_kind_specific_properties() -> None:
    rng = np.random.default_rng(3)
    counts = [structural(rng, 200, kinds={"intermittent": 1.0}, outlier_prob=0.0) for _ in range(30)]
    for s in counts:  # counts are non-negative integers
        assert np.all(s.target >= 0) and np.all(s.target == np.round(s.target))
    assert np.mean([np.mean(s.target == 0) for s in counts]) > 0.1
    for kind in ("positive", "solar"):
        for s in (structural(rng, 300, kinds={kind: 1.0}) for _ in range(20)):
            assert s.target.min() >= 0, kind
    solar = structural(rng, 480, kinds={"solar": 1.0}, outlier_prob=0.0)
    assert np.mean(solar.target == 0) > 0.2  # nights
    with pytest.raises(ValueError, match="unknown structural kinds"):
        structural(rng, 50, kinds={"nope": 1.0})


def test_generators_are_pure_functions_of_the_rng() -> None:
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    for fn in (structural, kernel_synth, gluonts_artificial):
        a = fn(np.random.default_rng(11), 333)
        b = fn(np.random.default_rng(11), 333)
        assert a.freq == b.freq and np.array_equal(a.target, b.target)
    c = kernel_synth(np.random.default_rng(12), 333)
    assert not np.array_equal(a.target, c.target)
    assert np.array_equal(np.random.get_state()[1], before)  # the global RNG was not touched


def test_seasonal_labels_follow_periods() -> None:
    """Series with a season get a frequency whose natural period it is (12 <-> MS, 24 <-> h...)."""
    rng = np.random.default_rng(5)
    seen = {}
    for _ in range(300):
        s = structural(rng, 500, kinds={"seasonal_trend": 1.0})
        if s.periods:
            seen.setdefault(s.freq, set()).add(s.periods[0])
    assert seen["MS"] == {12.0} and seen["QS"] == {4.0} and seen["h"] == {24.0}
    assert seen["30min"] == {48.0} and seen["D"] == {7.0}


@pytest.mark.parametrize("method", ["spectral", "exact"])
def test_kernel_synth_periodic_kernel_shows_its_period(method: str) -> None:
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    length = 240
    with threadpool_limits(1):  # a 2-thread Cholesky on a busy 2-core machine is 10x slower
        for period in (24.0, 12.0, 7.0):
            x = sample_kernel(rng, ExpSineSquared(period, 1.0, length), length, method=method)
            x = x - x.mean()
            acf = np.array([np.dot(x[:-k], x[k:]) / np.dot(x, x) for k in range(1, 60)])
            assert int(np.argmax(acf[2:])) + 3 == int(period)
            p = int(period)
            assert np.corrcoef(x[:-p], x[p:])[0, 1] > 0.99  # a pure periodic kernel repeats exactly
        kernel = ExpSineSquared(24.0, 1.0, length) + White(0.02)
        lag_corr = [np.corrcoef(x[:-24], x[24:])[0, 1]
                    for x in (sample_kernel(rng, kernel, length, method=method) for _ in range(7))]
    assert np.median(lag_corr) > 0.8


def test_kernel_matrices_match_scikit_learn() -> None:
    from sklearn.gaussian_process import kernels as sk

    length = 120
    x = np.arange(length) / length
    ours = ExpSineSquared(24, 0.7, length) * RBF(0.3) + DotProduct(1.0) + RationalQuadratic(0.2, 2.0) \
        + White(0.1) * Constant(2.0)
    ref = sk.ExpSineSquared(0.7, 24 / length) * sk.RBF(0.3) + sk.DotProduct(1.0) \
        + sk.RationalQuadratic(0.2, 2.0) + sk.WhiteKernel(0.1) * sk.ConstantKernel(2.0)
    np.testing.assert_allclose(ours.matrix(x), ref(x[:, None]), atol=1e-12)


@pytest.mark.parametrize("kernel", [RBF(0.1), RationalQuadratic(0.1, 0.5), ExpSineSquared(12, 0.8, 100),
                                    ExpSineSquared(10, 1.0, 100) + DotProduct(0.5)])
def test_spectral_sampler_has_the_kernel_covariance(kernel) -> None:
    rng = np.random.default_rng(1)
    length, n = 100, 3000
    samples = np.stack([sample_kernel(rng, kernel, length, n_features=64) for _ in range(n)])
    empirical = samples.T @ samples / n
    target = kernel.matrix(np.arange(length) / length)
    assert np.abs(empirical - target).mean() < 0.03 * target.max()


def test_kernel_synth_contract_and_speed() -> None:
    import time

    rng = np.random.default_rng(2)
    began = time.perf_counter()
    for length in LENGTHS * 5:
        _check_sample(kernel_synth(rng, length), length)
    assert time.perf_counter() - began < 5.0
    with pytest.raises(ValueError, match="unknown KernelSynth method"):
        sample_kernel(rng, RBF(1.0), 10, method="magic")


def test_mix_weights_are_convex() -> None:
    rng = np.random.default_rng(4)
    comps = [np.full(50, 3.0), np.linspace(1, 2, 50), -np.ones(50)]
    mixed, weights = mix(rng, comps, alpha=1.5)
    assert weights.shape == (3,) and np.all(weights >= 0) and np.isclose(weights.sum(), 1.0)
    scaled = [c / np.abs(c).mean() for c in comps]
    np.testing.assert_allclose(mixed, sum(w * c for w, c in zip(weights, scaled)))


def test_tsmixup_keeps_first_frequency_and_fits_lengths() -> None:
    rng = np.random.default_rng(5)
    pool = [(np.full(40, 5.0), "QS"), (np.full(300, 7.0), "MS"), (np.full(300, 2.0), "h")]
    freqs = set()
    for _ in range(60):
        s = tsmixup(rng, 200, pool_size=3, get=lambda i: pool[i])
        assert s.target.dtype == np.float32 and len(s.target) in (40, 200)
        assert (s.freq == "QS") == (len(s.target) == 40)  # the first component sets freq and length
        np.testing.assert_allclose(s.target, 1.0, rtol=1e-6)  # scaled constants mix to 1: convex
        freqs.add(s.freq)
    assert freqs == {"QS", "MS", "h"}


def test_decomposition_is_exact_on_a_line_plus_a_season_and_always_adds_up() -> None:
    for n in (24, 30, 61):
        t = np.arange(n, dtype=np.float64)
        season = np.sin(2 * np.pi * t / 12)
        trend, seas, rest = decompose(10 + 0.2 * t + season, 12)
        np.testing.assert_allclose(trend, 10 + 0.2 * t, atol=1e-9)  # to the ends: they follow the line
        np.testing.assert_allclose(seas, season, atol=1e-9)
        np.testing.assert_allclose(rest, 0.0, atol=1e-9)
    trend, seas, _ = decompose(10 + 0.2 * np.arange(18.0) + np.sin(np.arange(18) * np.pi / 6), 12)
    assert not seas.any() and np.isfinite(trend).all()  # under two seasons: no season is estimated


def test_block_bootstrap_resamples_contiguous_blocks_of_the_remainder() -> None:
    remainder = np.arange(100, dtype=np.float64)  # each value names its position
    out = block_bootstrap(np.random.default_rng(1), remainder, 8)
    assert out.shape == remainder.shape and set(out) <= set(remainder)
    steps = np.diff(out)
    assert (steps == 1).mean() >= 6 / 8 and (steps != 1).any()  # runs of consecutive positions, joined


def test_a_bootstrapped_copy_keeps_trend_season_and_sign_with_other_noise() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(120, dtype=np.float64)
    noise = 0.05 * rng.normal(size=120)
    series = np.exp(3 + 0.01 * t + 0.2 * np.sin(2 * np.pi * t / 12) + noise)  # multiplicative: logged
    copy = bootstrap_copy(rng, series, 12)
    assert copy.shape == series.shape and (copy > 0).all() and not np.allclose(copy, series)
    log_gap = np.log(copy) - np.log(series)  # the difference of two noise draws
    assert np.abs(log_gap).max() < 8 * 0.05 and abs(log_gap.mean()) < 0.05
    same = bootstrap_copy(np.random.default_rng(3), series, 12)
    np.testing.assert_array_equal(same, bootstrap_copy(np.random.default_rng(3), series, 12))  # seeded


def test_copies_keep_the_sign_and_stay_near_the_range_of_their_source() -> None:
    rng = np.random.default_rng(5)
    demand = np.where(rng.random(200) < 0.6, 0.0, rng.poisson(3, 200).astype(float))  # intermittent
    step = np.r_[np.ones(60), np.full(60, 1e6)] * np.exp(0.01 * rng.normal(size=120))  # a level shift
    for _ in range(50):
        assert bootstrap_copy(rng, demand, 7).min() >= 0  # unlogged (zeros), floored at zero
        copy = bootstrap_copy(rng, step, 1)
        assert copy.max() < 1.1 * step.max() and copy.min() > 0.9 * step.min()  # the shift not carried along
    for n in range(1, 6):  # too short for a trend window or a season: still a copy of the right length
        tiny = np.arange(1.0, n + 1)
        assert bootstrap_copy(rng, tiny, 12).shape == (n,)


def test_bootstrap_sample_windows_a_pool_series_and_keeps_its_frequency() -> None:
    rng = np.random.default_rng(4)
    pool = [(10 + np.random.default_rng(i).normal(size=n).cumsum(), f) for i, (n, f) in
            enumerate([(30, "YS"), (200, "MS"), (500, "h")])]
    seen = set()
    for _ in range(40):
        sample = bootstrap_sample(rng, 100, pool_size=3, get=lambda i: pool[i])
        seen.add(sample.freq)
        assert sample.target.dtype == np.float32 and len(sample.target) == (30 if sample.freq == "YS" else 100)
    assert seen == {"YS", "MS", "h"}


def test_gluonts_artificial_both_paths() -> None:
    rng = np.random.default_rng(6)
    for prob in (0.0, 1.0):
        for length in (30, 200, 700):
            s = gluonts_artificial(rng, length, complex_seasonal_prob=prob)
            _check_sample(s, length)
            if prob == 1.0:
                assert s.freq in ("MS", "W-SUN", "D", "h")


def test_chaos_integrates_restores_global_rng_and_gives_views() -> None:
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    traj = chaos_mod.integrate("Lorenz", 200, pts_per_period=20)
    assert traj.shape == (200, 3) and np.all(np.isfinite(traj))
    assert np.array_equal(np.random.get_state()[1], state)
    rng = np.random.default_rng(0)
    views = chaos_mod.chaos_views(rng, 150, systems=SYSTEMS, views=2)
    assert len(views) == 2 and not np.array_equal(views[0].target, views[1].target)
    mv = chaos_mod.chaos(np.random.default_rng(1), 150, systems=["Lorenz"], multivariate=True)
    assert mv.target.shape == (3, 150) and mv.target.dtype == np.float32
    a = chaos_mod.chaos(np.random.default_rng(3), 120, systems=SYSTEMS)
    b = chaos_mod.chaos(np.random.default_rng(3), 120, systems=SYSTEMS)
    assert np.array_equal(a.target, b.target) and a.freq == b.freq


@pytest.mark.parametrize("behaviour,reason", [
    ("raise", "raised RuntimeError: boom"),
    ("none", "returned None"),
    ("nan", "non-finite"),
    ("flat", "collapsed to a fixed point"),
])
def test_failing_system_gives_a_reason_not_a_crash(monkeypatch, behaviour: str, reason: str) -> None:
    import dysts.flows

    def broken(self, n, **kwargs):
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "none":
            return None
        return np.full((n, 3), np.nan if behaviour == "nan" else 1.0)

    monkeypatch.setattr(dysts.flows.Rossler, "make_trajectory", broken)
    with pytest.raises(chaos_mod.ChaosFailure, match=reason):
        chaos_mod.integrate("Rossler", 100)
    working, skipped = chaos_mod.probe_systems(["Lorenz", "Rossler"], length=100)
    assert working == ["Lorenz"] and reason in skipped["Rossler"]
    failures: list = []
    s = chaos_mod.chaos(np.random.default_rng(0), 100, systems=["Rossler", "Lorenz"], failures=failures,
                        max_attempts=10)
    assert s.target.shape == (100,)
    assert all(name == "Rossler" and reason in why for name, why in failures)


@pytest.mark.parametrize("name", ["Lorenz", "MackeyGlass", "Henon", "InteriorSquirmer"])
def test_work_budget_stops_every_kind_of_system(name: str) -> None:
    """Flows, delay equations, maps and flows that override ``rhs`` all count their evaluations."""
    with pytest.raises(chaos_mod.ChaosFailure, match="exceeded 50 right-hand-side evaluations"):
        chaos_mod.integrate(name, 300, pts_per_period=10, max_evals=50)
    with pytest.raises(chaos_mod.ChaosFailure, match="exceeded time budget of 0 s"):
        chaos_mod.integrate(name, 300, pts_per_period=10, time_budget=0.0)


def test_free_cycles_sit_at_periods_no_calendar_has() -> None:
    """free_cycle puts cycles at arbitrary periods (11 years, 16 steps...), not at calendar seasons."""
    rng = np.random.default_rng(21)
    length, dominant = 300, []
    for _ in range(60):
        s = structural(rng, length, kinds={"free_cycle": 1.0}, outlier_prob=0.0)
        assert s.freq == "YS"  # yearly: no calendar season competes with the cycle
        y = np.log(s.target) if np.all(s.target > 0) else s.target.astype(np.float64)
        t = np.arange(length)
        y = y - np.polyval(np.polyfit(t, y, 2), t)  # the trend would dominate the spectrum
        power = np.abs(np.fft.rfft(y * np.hanning(length))) ** 2
        k = int(np.argmax(power[2:])) + 2  # skip the slowest wanderings
        dominant.append(length / k)
    assert len({round(p) for p in dominant}) >= 20
    integer_share = np.mean([abs(p - round(p)) < 0.05 * p and round(p) in (4, 7, 12, 24, 52)
                             for p in dominant])
    assert integer_share < 0.3


def _trend_to_residual(y: np.ndarray) -> float:
    """Change of the least-squares line over ``y`` relative to the spread around it."""
    t = np.arange(len(y))
    coef = np.polyfit(t, y, 1)
    return abs(coef[0] * len(y)) / (np.std(y - np.polyval(coef, t)) + 1e-12)


@pytest.mark.parametrize("length", [96, 512])
def test_growth_trends_dominate_the_window(length: int) -> None:
    """growth makes trends that stand out of season and noise within a model's window, which the
    trends of seasonal_trend (spread over the whole series, sometimes absent) do much less."""
    ratios = {}
    for kind in ("growth", "seasonal_trend"):
        rng = np.random.default_rng(5)
        ratios[kind] = np.median([
            _trend_to_residual(structural(rng, length, kinds={kind: 1.0}, outlier_prob=0.0).target.astype(np.float64))
            for _ in range(100)])
    assert ratios["growth"] > 4.0
    assert ratios["growth"] > 1.4 * ratios["seasonal_trend"]


def test_local_trend_slopes_persist() -> None:
    """local_trend's last slope is the best guess of its next: continuing the recent drift beats
    holding the last value, and its steps are strongly autocorrelated (a random walk's are not)."""
    rng = np.random.default_rng(8)
    length, horizon, drift_wins, step_corr = 60, 8, [], []
    while len(drift_wins) < 60:
        s = structural(rng, length, kinds={"local_trend": 1.0}, outlier_prob=0.0)
        _check_sample(s, length)
        if s.periods:  # seasons would mask the slope; the trend is what is tested here
            continue
        y = s.target.astype(np.float64)
        past, future = y[:-horizon], y[-horizon:]
        slope = (past[-1] - past[-11]) / 10.0
        drift = past[-1] + slope * np.arange(1, horizon + 1)
        drift_wins.append(np.abs(drift - future).mean() < np.abs(past[-1] - future).mean())
        d = np.diff(y)
        step_corr.append(np.corrcoef(d[:-1], d[1:])[0, 1])
    assert np.mean(drift_wins) > 0.75
    assert np.median(step_corr) > 0.5


def _seasonal_component(y: np.ndarray, period: int) -> np.ndarray:
    """y minus its centred moving average over one period (classical decomposition)."""
    kernel = np.ones(period) / period
    if period % 2 == 0:
        kernel = np.convolve(kernel, [0.5, 0.5])
    trend = np.convolve(y, kernel, mode="valid")
    start = (len(kernel) - 1) // 2
    return y[start: start + len(trend)] - trend


def _last_season_wins(kind: str, seed: int, n: int = 80) -> float:
    """How often the last cycle's seasonal component predicts the next better than the mean cycle."""
    rng = np.random.default_rng(seed)
    wins: list[bool] = []
    while len(wins) < n:
        s = structural(rng, int(rng.integers(60, 240)), kinds={kind: 1.0}, outlier_prob=0.0)
        _check_sample(s, len(s.target))
        if not s.periods or s.periods[0] > 12:
            continue
        period = int(round(s.periods[0]))
        component = _seasonal_component(s.target.astype(np.float64), period)
        k = len(component) // period
        if k < 4:
            continue
        cycles = component[len(component) - k * period:].reshape(k, period)
        past, nxt = cycles[:-1], cycles[-1]
        wins.append(np.abs(past[-1] - nxt).mean() < np.abs(past.mean(0) - nxt).mean())
    return float(np.mean(wins))


def test_evolving_season_latest_season_is_the_best_guess() -> None:
    """evolving_season's pattern moves from cycle to cycle: the last cycle predicts the next
    better than the average cycle, clearly more often than for seasonal_trend's fixed seasons."""
    evolving, fixed = _last_season_wins("evolving_season", 9), _last_season_wins("seasonal_trend", 9)
    assert evolving > 0.8
    assert evolving - fixed > 0.1
