"""The training losses' per-window scales: values on known series, masking, invariances."""

import math

import pytest
import torch

from tsfm.nn.losses import NAIVE_FLOOR, context_scale, scaled_pinball_loss
from tsfm.train.module import ForecastingTask


def _series(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(1, -1, 1)


def test_mad_scale_is_the_mean_absolute_deviation():
    x = _series([1.0, 3.0, 5.0, 7.0])  # mean 4, deviations 3, 1, 1, 3
    assert context_scale(x, None).item() == pytest.approx(2.0)


def test_naive_scale_is_the_mean_one_step_change():
    x = _series([0.0, 2.0, 1.0, 4.0, 4.0])  # |steps| 2, 1, 3, 0 -> 1.5; MAD 1.52
    assert context_scale(x, None, kind="naive").item() == pytest.approx(1.5)


def test_naive_scale_is_floored_by_the_mad_on_smooth_series():
    line = _series([float(t) for t in range(101)])  # one-step change 1, MAD 25.5 -> floor 1.275
    mad = context_scale(line, None).item()
    assert mad == pytest.approx(2550 / 101, rel=1e-12)
    assert context_scale(line, None, kind="naive").item() == pytest.approx(NAIVE_FLOOR * mad)
    short = _series([float(t) for t in range(11)])  # MAD 2.73 -> floor 0.136 < 1
    assert context_scale(short, None, kind="naive").item() == pytest.approx(1.0)


def test_naive_scale_counts_only_consecutive_observed_points():
    x = _series([0.0, 100.0, 5.0, 6.0, float("nan"), 50.0, 52.0])
    mask = torch.tensor([0, 0, 1, 1, 1, 1, 1], dtype=torch.float64).reshape(1, -1, 1)
    # observed pairs: (5, 6) and (50, 52); the padded 0/100 and the NaN never count
    assert context_scale(x, mask, kind="naive").item() == pytest.approx(1.5)


def test_both_scales_are_affine_equivariant_and_positive_on_flat_contexts():
    torch.manual_seed(0)
    x = torch.randn(3, 40, 2, dtype=torch.float64).cumsum(1)
    for kind in ("mad", "naive"):
        base = context_scale(x, None, kind=kind)
        assert torch.allclose(context_scale(7.0 * x - 3.0, None, kind=kind), 7.0 * base)
        flat = context_scale(torch.full((1, 20, 1), 5.0, dtype=torch.float64), None, kind=kind)
        assert flat.item() == pytest.approx(5.0)  # the level, never zero
    with pytest.raises(ValueError, match="unknown loss scale"):
        context_scale(x, None, kind="std")


def test_naive_loss_weighs_a_trend_window_by_its_step_size():
    """The same absolute error costs (MAD / step) times more on a trend under "naive" than "mad"."""
    past = _series([2.0 * t for t in range(40)])  # step 2, MAD 20
    future = _series([80.0, 82.0])
    pred = (future + 1.0).unsqueeze(-1)  # error 1 at the single quantile 0.5
    mad = scaled_pinball_loss(pred, future, [0.5], past)
    naive = scaled_pinball_loss(pred, future, [0.5], past, scale_kind="naive")
    assert mad.item() == pytest.approx(0.5 / 20.0)
    assert naive.item() == pytest.approx(0.5 / 2.0)


def test_training_task_passes_the_scale_and_rejects_unknown_ones():
    """Same weights, same batch: random-walk windows move less per step than they spread, so
    "naive" gives the larger loss."""
    config = {"family": "ttm", "context_length": 32, "prediction_length": 8, "patch_length": 8,
              "d_model": 32, "num_layers": 1, "decoder_d_model": 16, "decoder_num_layers": 1}
    torch.manual_seed(0)
    walk = torch.randn(4, 40, 1).cumsum(1)
    batch = {"past_values": walk[:, :32], "future_values": walk[:, 32:]}
    mad_task = ForecastingTask(model=config)
    naive_task = ForecastingTask(model=config, loss_scale="naive")
    naive_task.model.load_state_dict(mad_task.model.state_dict())
    mad, naive = mad_task._loss(batch).item(), naive_task._loss(batch).item()
    assert math.isfinite(mad) and naive > mad
    with pytest.raises(ValueError, match="loss_scale"):
        ForecastingTask(model=config, loss_scale="mase")
