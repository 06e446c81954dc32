"""The shared forecasting path: level interpolation, rollout past the model horizon, constants."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tsfm.errors import InputError
from tsfm.inference import (
    constant_channels,
    floor_at_zero,
    forecast_arrays,
    from_log_space,
    interpolate_levels,
    log_scale_channels,
    nonnegative_channels,
    pin_constants,
    to_log_space,
)
from tsfm.models.base import ForecastModel, ModelConfig, prepare_inputs


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


def test_interpolate_levels_linear_and_exact():
    values = np.array([[1.0, 2.0, 4.0]])
    out = interpolate_levels(values, [0.1, 0.5, 0.9], [0.1, 0.3, 0.5, 0.7])
    assert np.allclose(out, [[1.0, 1.5, 2.0, 3.0]])


def test_interpolate_levels_rejects_out_of_range():
    with pytest.raises(InputError, match="outside the model's range"):
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
    with pytest.raises(InputError, match="log_scale must be one of seasonal, positive, never"):
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
