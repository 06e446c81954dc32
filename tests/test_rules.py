"""The rules around a network (``tsfm_runtime.rules``): level interpolation, rollout past the model
horizon, constants, floor at zero, log space, seasonal adjustment."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tsfm.models.base import ForecastModel, ModelConfig, prepare_inputs
from tsfm.pipeline import torch_step
from tsfm_runtime.rules import (
    constant_channels,
    floor_at_zero,
    from_log_space,
    interpolate_levels,
    log_scale_channels,
    nonnegative_channels,
    pin_constants,
    rollout,
    seasonal_factors,
    to_log_space,
)


@dataclass
class LastValueConfig(ModelConfig):
    spread: float = 1.0


class LastValueModel(ForecastModel):
    """Test double: repeats the last observed value, quantile q offset by spread * (q - 0.5)."""

    config_class = LastValueConfig

    def forward(self, past_values, past_mask=None, freq_id=None, past_exog=None, future_exog=None):
        values, _ = prepare_inputs(past_values, past_mask)
        last = values[:, -1, :]  # [B, C]
        q = torch.tensor(self.config.quantiles) - 0.5
        out = last[:, None, :, None] + self.config.spread * q
        return out.expand(-1, self.config.prediction_length, -1, -1).contiguous()


def _model(h=4, spread=1.0):
    return LastValueModel(LastValueConfig(context_length=8, prediction_length=h, spread=spread))


def forecast_arrays(model, past, mask, freq_id, horizon):
    return rollout(torch_step(model, 256, "cpu"), past, mask, freq_id, horizon, model.quantiles,
                   model.config.prediction_length)


def test_interpolate_levels_linear_and_exact():
    values = np.array([[1.0, 2.0, 4.0]])
    out = interpolate_levels(values, [0.1, 0.5, 0.9], [0.1, 0.3, 0.5, 0.7])
    assert np.allclose(out, [[1.0, 1.5, 2.0, 3.0]])


def test_interpolate_levels_rejects_out_of_range():
    with pytest.raises(ValueError, match="outside the model's range"):
        interpolate_levels(np.zeros((1, 3)), [0.1, 0.5, 0.9], [0.05])


def test_forecast_within_model_horizon():
    past = np.arange(16, dtype=np.float32).reshape(2, 8, 1)
    out = forecast_arrays(_model(), past, np.ones_like(past), np.zeros(2, np.int64), horizon=3)
    assert out.shape == (2, 3, 1, 9)
    assert np.allclose(out[:, :, 0, 4], [[7, 7, 7], [15, 15, 15]])  # median = last value


def test_rollout_spreads_uncertainty_and_keeps_median():
    """Rolling out every quantile path widens the band step by step; the median path stays put."""
    past = np.zeros((1, 8, 1), dtype=np.float32)
    out = forecast_arrays(_model(h=4, spread=1.0), past, np.ones_like(past), np.zeros(1, np.int64), horizon=12)
    assert out.shape == (1, 12, 1, 9)
    assert np.allclose(out[0, :, 0, 4], 0.0, atol=1e-6)
    width = out[0, :, 0, -1] - out[0, :, 0, 0]
    assert np.allclose(width[:4], 0.8)  # first chunk: the model's own band
    assert width[4] > width[3] and width[8] >= width[4]  # a sum of two draws is wider; never narrower after
    assert np.all(np.diff(out, axis=-1) >= 0)  # monotone


def test_constant_history_is_pinned():
    past = np.full((2, 8, 2), 5.0, dtype=np.float32)
    past[1, :, 1] = np.arange(8)
    mask = np.ones_like(past)
    mask[0, :3] = 0
    past[0, :3] = np.nan
    assert constant_channels(past, mask).tolist() == [[True, True], [True, False]]
    q = np.random.default_rng(0).normal(size=(2, 4, 2, 3)).astype(np.float32)
    pinned = pin_constants(q, past, mask)
    assert np.all(pinned[0] == 5.0) and np.all(pinned[1, :, 0] == 5.0)
    assert np.array_equal(pinned[1, :, 1], q[1, :, 1])


def test_floor_at_zero_only_where_the_context_has_no_negative_value():
    past = np.ones((2, 6, 2), dtype=np.float32)
    past[0, :, 0] = [0, 0, 3, 0, 0, 2]  # a zero floor: floored
    past[0, 1, 1] = -9.0  # a negative value the mask hides: still floored
    past[1, :, 0] = np.nan  # nothing observed: left alone
    past[1, 2, 1] = -0.5  # a negative value: left alone
    mask = np.ones_like(past)
    mask[0, 1, 1] = 0.0
    mask[1, :, 0] = 0.0
    assert nonnegative_channels(past, mask).tolist() == [[True, True], [False, False]]
    q = np.sort(np.random.default_rng(1).normal(size=(2, 5, 2, 3)), axis=-1).astype(np.float32)
    assert (q < 0).any(axis=(1, 3)).all()  # every channel has something to floor
    out = floor_at_zero(q, past, mask)
    assert np.array_equal(out[0], np.maximum(q[0], 0)) and np.array_equal(out[1], q[1])
    assert np.all(np.diff(out, axis=-1) >= 0)  # still sorted
    assert np.array_equal(floor_at_zero(q, past, mask, nonnegative=True), np.maximum(q, 0))
    assert floor_at_zero(q, past, mask, nonnegative=False) is q


def test_log_scale_channels_by_mode_and_season():
    past = np.full((2, 6, 2), 5.0, dtype=np.float32)
    past[0, 2, 1] = 0.0  # a zero: stays in raw space
    past[1, 0, 0] = -3.0  # a negative value the mask hides: still logged
    past[1, :, 1] = np.nan  # nothing observed: not logged
    mask = np.ones_like(past)
    mask[1, 0, 0] = 0.0
    assert log_scale_channels(past, mask, "positive", season=1).tolist() == [[True, False], [True, False]]
    wide = past.copy()
    wide[0, 3, 0] = 5.0 * 100.5  # spans more than a factor of 100: near-zero values would rule its logs
    wide[1, 3, 0] = 5.0 * 100.0  # exactly 100: still logged
    assert log_scale_channels(wide, mask, "positive", season=1).tolist() == [[False, False], [True, False]]
    assert log_scale_channels(past, mask, "seasonal", season=12).tolist() == [[True, False], [True, False]]
    assert not log_scale_channels(past, mask, "seasonal", season=1).any()  # yearly data stays raw
    assert not log_scale_channels(past, mask, "never", season=12).any()
    with pytest.raises(ValueError, match="log_scale must be one of seasonal, positive, never"):
        log_scale_channels(past, mask, "always", season=12)


def test_log_space_round_trip_is_bounded_by_the_context_range():
    past = np.array([[[1.0, 2.0], [np.e, 2.0], [np.e ** 2, 2.0], [7.0, -1.0]]], dtype=np.float32)  # [1, 4, 2]
    mask = np.ones_like(past)
    mask[0, 3, 0] = 0.0  # unobserved: NaN in log space, out of the range
    logged = np.array([[True, False]])
    logs = to_log_space(past, mask, logged)
    np.testing.assert_allclose(logs[0, :3, 0], [0.0, 1.0, 2.0], atol=1e-6)
    assert np.isnan(logs[0, 3, 0]) and np.array_equal(logs[..., 1], past[..., 1])  # raw channel untouched
    # log range [0, 2] widened by its span: forecasts are kept in [-2, 4] before exp
    q = np.array([[-5.0, -1.0, 1.5, 3.0, 9.0]], dtype=np.float32)[None, :, None, :].repeat(2, axis=2)  # [1, 1, 2, 5]
    back = from_log_space(q, logs, mask, logged)
    np.testing.assert_allclose(back[0, 0, 0], np.exp([-2.0, -1.0, 1.5, 3.0, 4.0]), rtol=1e-6)
    assert np.array_equal(back[0, 0, 1], q[0, 0, 1])
    assert np.all(np.diff(back, axis=-1) >= 0)  # exp keeps quantiles sorted
    assert from_log_space(q, logs, mask, np.zeros_like(logged)) is q


def test_conformal_widening_reaches_nominal_coverage_on_exchangeable_data():
    """Forecasts that think the noise is N(0, 1) when it is N(0, 2): the 80% interval covers about 52%;
    widened by what one half of the data says, it covers 80% of the other half (and the 40% one 40%)."""
    from scipy.stats import norm

    from tsfm_runtime.rules import conformal_widening, widen

    levels = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    rng = np.random.default_rng(0)
    actual = rng.normal(0, 2, (400, 12, 1))
    quantiles = np.broadcast_to(norm.ppf(levels), (400, 12, 1, 9)).astype(np.float32)
    known = np.ones(actual.shape, dtype=bool)
    widening = conformal_widening(quantiles[:200], actual[:200], known[:200], levels)
    assert widening.shape == (4,) and np.all(widening > 0)
    calibrated = widen(quantiles[200:], widening, levels)
    test = actual[200:, :, 0]
    for lo, hi, nominal in ((0, 8, 0.8), (2, 6, 0.4)):
        raw = np.mean((test >= quantiles[200:, :, 0, lo]) & (test <= quantiles[200:, :, 0, hi]))
        got = np.mean((test >= calibrated[:, :, 0, lo]) & (test <= calibrated[:, :, 0, hi]))
        assert raw < nominal - 0.1 and abs(got - nominal) < 0.03
    assert np.array_equal(calibrated[..., 4], quantiles[200:, ..., 4])  # the median stays


def test_widen_keeps_levels_sorted_and_zero_changes_nothing():
    from tsfm_runtime.rules import conformal_widening, interval_pairs, widen

    levels = (0.1, 0.5, 0.9)
    q = np.sort(np.random.default_rng(2).normal(size=(3, 4, 2, 3)), axis=-1).astype(np.float32)
    assert interval_pairs(levels) == [(0, 2)]
    np.testing.assert_array_equal(widen(q, np.zeros(1), levels), q)
    assert np.all(np.diff(widen(q, np.array([-0.5]), levels), axis=-1) >= 0)  # narrowed to the midpoint, no crossing
    lopsided = np.float32([[11.0, 11.85, 12.07, 12.61, 13.0]])  # 0.4 narrowed by half the width passes the median
    narrowed = widen(lopsided, np.array([0.0, -0.5]), (0.1, 0.4, 0.5, 0.6, 0.9))
    assert narrowed[0, 2] == np.float32(12.07) and narrowed[0, 1] == np.float32(12.07)  # it stops at the median
    assert narrowed[0, 3] == np.float32(12.61 - 0.5 * (12.61 - 11.85))
    too_few = conformal_widening(q[:1, :1, :1], np.zeros((1, 1, 1)), np.ones((1, 1, 1), bool), levels)
    assert too_few.tolist() == [0.0]  # one score cannot set a 90% quantile: no change


def test_calibration_only_uses_the_history_it_is_given():
    """Backtests sit inside the histories: the forecast of a series does not change when values after its
    end would have been different, and a history too short for one backtest is left uncalibrated."""
    from tsfm_runtime.rules import forecast

    model = _model(h=4, spread=1.0)
    step = torch_step(model, 256, "cpu")
    rng = np.random.default_rng(3)
    values = rng.normal(0, 3, (2, 40, 1)).astype(np.float32)
    mask = np.ones_like(values)
    args = (step, values, mask, np.zeros(2, np.int64), 4, model.quantiles, 4)
    calibrated = forecast(*args, context=8, calibration_windows=3)
    plain = forecast(*args, context=8)
    width = lambda q: q[..., -1] - q[..., 0]  # noqa: E731
    assert np.all(width(calibrated) > width(plain))  # noise of 3 against a band of 0.8: widened
    short = forecast(step, values[:, :6], mask[:, :6], np.zeros(2, np.int64), 4, model.quantiles, 4, context=8,
                     calibration_windows=3)
    np.testing.assert_array_equal(short, forecast(step, values[:, :6], mask[:, :6], np.zeros(2, np.int64), 4,
                                                  model.quantiles, 4, context=8))


# ----------------------------------------------------------------------------- seasonal adjustment
SEASON = np.array([0.7, 1.0, 1.3, 1.0])  # quarterly indices, mean 1


def seasonal_batch(length=40, trend=0.5, noise=0.0, seed=0):
    """[1, length, 1]: a level with a trend times ``SEASON``, phase 0 at the first step."""
    t = np.arange(length)
    rng = np.random.default_rng(seed)
    y = (50 + trend * t) * SEASON[t % 4] * np.exp(noise * rng.normal(size=length))
    return y.astype(np.float32)[None, :, None]


def reference_factors(y, m, t, horizon):
    """Classical decomposition of one gap-free positive run, written out step by step; None when the
    seasonality test fails."""
    n = len(y)
    x = y - y.mean()
    r = [np.sum(x[k:] * x[:n - k]) / np.sum(x * x) for k in range(1, m + 1)]
    if n < 3 * m or abs(r[-1]) <= 1.645 * np.sqrt((1 + 2 * sum(v * v for v in r[:-1])) / n):
        return None
    half = m // 2
    ratios = {p: [] for p in range(m)}
    for i in range(half, n - half):
        inner = y[i - half:i + half + 1]
        window = inner if m % 2 else np.r_[inner[0] / 2, inner[1:-1], inner[-1] / 2]  # 2 x m for an even m
        ratios[i % m].append(y[i] / (window.sum() / m))
    indices = np.array([np.mean(ratios[p]) for p in range(m)])
    indices /= indices.mean()
    start = t - n
    return indices[(np.arange(start, t) - start) % m], indices[(np.arange(t, t + horizon) - start) % m]


def test_seasonal_factors_recover_a_multiplicative_season_at_the_right_phases():
    values = seasonal_batch(length=42)  # ends at phase 1: the forecast starts at phase 2
    past, ahead = seasonal_factors(values, np.ones_like(values), season=4, horizon=6)
    np.testing.assert_allclose(past[0, :, 0], SEASON[np.arange(42) % 4], rtol=0.02)
    np.testing.assert_allclose(ahead[0, :, 0], SEASON[np.arange(42, 48) % 4], rtol=0.02)
    np.testing.assert_allclose(past[0, -4:, 0].mean(), 1.0, rtol=1e-9)


def test_seasonal_factors_leave_what_does_not_qualify():
    """Noise, fewer than three seasons, a zero, a gap or no season: no factors (1, or None for all)."""
    good = seasonal_batch(length=40)
    rng = np.random.default_rng(1)
    cases = {"noise": (50 + rng.normal(size=40)).astype(np.float32)[None, :, None], "short": good[:, -11:],
             "zero": np.where(np.arange(40)[None, :, None] == 5, 0.0, good).astype(np.float32),
             "gap": np.where(np.arange(40)[None, :, None] == 20, np.nan, good).astype(np.float32)}
    for name, values in cases.items():
        assert seasonal_factors(values, np.ones_like(values), 4, 3) is None, name
    assert seasonal_factors(good, np.ones_like(good), 1, 3) is None
    # in a batch the good channel is adjusted, the others keep factor 1, left padding is not a gap
    padded = np.concatenate([np.full((1, 10, 1), np.nan, np.float32), good], axis=1)
    noise = (50 + rng.normal(size=50)).astype(np.float32)[None, :, None]
    batch = np.concatenate([padded, noise], axis=2)
    mask = np.isfinite(batch).astype(np.float32)
    past, ahead = seasonal_factors(batch, mask, 4, 3)
    assert np.all(past[0, :, 1] == 1) and np.all(ahead[0, :, 1] == 1)
    assert not np.allclose(ahead[0, :, 0], 1)


def test_seasonal_factors_equal_the_decomposition_written_out():
    rng = np.random.default_rng(7)
    for m, t in ((4, 30), (5, 40), (12, 96), (7, 64)):
        n_series = 12
        values = np.full((n_series, t, 1), np.nan, np.float32)
        for i in range(n_series):
            start = int(rng.integers(0, t - 3 * m + 1))
            steps = np.arange(t - start)
            values[i, start:, 0] = (20 + rng.normal(0, 1, t - start).cumsum() * 0.1) * (
                1 + 0.3 * np.sin(2 * np.pi * steps / m + i)) * np.exp(rng.normal(0, 0.05 * (i % 3), t - start))
        mask = np.isfinite(values).astype(np.float32)
        got = seasonal_factors(values, mask, m, 5)
        for i in range(n_series):
            run = values[i, np.isfinite(values[i, :, 0]), 0].astype(np.float64)
            want = reference_factors(run, m, t, 5)
            if want is None:
                assert got is None or (np.all(got[0][i] == 1) and np.all(got[1][i] == 1))
            else:
                np.testing.assert_allclose(got[0][i, t - len(run):, 0], want[0], rtol=1e-9)
                np.testing.assert_allclose(got[1][i, :, 0], want[1], rtol=1e-9)


def test_seasonal_adjustment_lets_a_naive_network_continue_the_season():
    """A network that repeats its last value, shown a flat level times a season, forecasts the season
    once the season is divided out; without adjustment, or without a season, it repeats the last value."""
    from tsfm_runtime.rules import forecast

    model = _model(h=4, spread=0.0)
    step = torch_step(model, 256, "cpu")
    values = seasonal_batch(length=42, trend=0.0)
    args = (step, values, np.ones_like(values), np.zeros(1, np.int64), 6, model.quantiles, 4)
    adjusted = forecast(*args, context=40, season=4, seasonal_adjustment=True)
    np.testing.assert_allclose(adjusted[0, :, 0, 4], 50 * SEASON[np.arange(42, 48) % 4], rtol=0.02)
    plain = forecast(*args, context=40, season=4)
    np.testing.assert_allclose(plain[0, :, 0, 4], values[0, -1, 0])
    np.testing.assert_array_equal(forecast(*args, context=40, season=1, seasonal_adjustment=True), plain)
