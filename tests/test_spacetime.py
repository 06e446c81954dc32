"""SpaceTime: AR(p) recovery (issue 6 acceptance), preprocessing kernels, the closed loop against a
hand-stepped recurrence, scan-backend parity, the mask embedding, config validation and the yaml,
the loss terms and the Forecaster. The contract every family keeps (scale, padding, channels, round
trips, training, ONNX export) is in test_model_contract.py."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import monthly_frame, randomise
from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.hub import save_pretrained
from tsfm.models.registry import build_model
from tsfm.models.spacetime import SpaceTime, SpaceTimeConfig
from tsfm.nn.ssm import ClosedLoopCompanionSSM, PreprocessSSM, normalise_a

H, L = 8, 32  # SpaceTimeConfig.tiny(): context 32, horizon 8
REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> SpaceTime:
    torch.manual_seed(0)
    return SpaceTime(SpaceTimeConfig.tiny(**overrides)).eval()


# ---------------------------------------------------------------- acceptance: AR(p) recovery
AR_COEFFS = np.array([0.6, -0.4, 0.3, 0.25])  # stationary: |roots of z^4 - ...| = 0.89, 0.84, 0.84, 0.40


def simulate_ar(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AR(4) series with unit-variance Gaussian innovations (after a 500-step burn-in), and the innovations."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=n + 500)
    x = np.zeros(n + 500)
    for t in range(4, n + 500):
        x[t] = AR_COEFFS @ x[t - 4 : t][::-1] + noise[t]
    return torch.tensor(x[500:], dtype=torch.float32), torch.tensor(noise[500:], dtype=torch.float32)


def test_recovers_an_ar4_process() -> None:
    """Issue 6 acceptance: trained on a simulated AR(4) series with the model's own training_loss
    (prediction_length 1), the forward's one-step median forecast on held-out data has a mean
    squared error within 10% of the innovation variance (1)."""
    assert np.abs(np.roots(np.r_[1.0, -AR_COEFFS])).max() < 1  # stationary
    context, steps, batch = 64, 400, 32
    train, _ = simulate_ar(20_000, seed=0)
    test, noise = simulate_ar(4_000, seed=1)
    torch.manual_seed(0)
    model = SpaceTime(SpaceTimeConfig.tiny(context_length=context, prediction_length=1))
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-2, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    offsets = torch.arange(context + 1)
    start = time.perf_counter()
    model.train()
    for _ in range(steps):
        windows = train[torch.randint(0, len(train) - context - 1, (batch,), generator=g)[:, None] + offsets]
        loss = model.training_loss(windows[:, :context, None], windows[:, context:, None])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    train_seconds = time.perf_counter() - start

    model.eval()
    starts = torch.arange(len(test) - context - 1)
    windows = test[starts[:, None] + offsets]
    with torch.no_grad():
        forecast = model(windows[:, :context, None])
    assert forecast.shape == (len(starts), 1, 1, len(model.quantiles))
    median = forecast[:, 0, 0, model.config.median_index]
    mse = ((median - windows[:, context]) ** 2).mean().item()
    floor = (noise[starts + context] ** 2).mean().item()  # the realised innovation variance (~1)
    naive = ((windows[:, context - 1] - windows[:, context]) ** 2).mean().item()
    assert naive > 1.5 and windows[:, context].var().item() > 1.5  # the task is not trivially at the floor
    assert mse <= 1.1, (mse, floor, train_seconds)
    assert mse <= 1.1 * floor, (mse, floor)


# ---------------------------------------------------------------- preprocessing SSM
def test_differencing_annihilates_polynomials() -> None:
    """Differencing of order k+1 turns a degree-k polynomial into zeros once k+1 points are in;
    order k leaves the constant k! (times the leading coefficient)."""
    pre = PreprocessSSM(4, diff_orders=4, ma_windows=()).double()
    t = torch.arange(20, dtype=torch.float64)
    for degree in range(3):
        poly = (2.0 * t**degree + 0.5 * t - 3.0) if degree >= 1 else torch.full_like(t, 7.0)
        out = pre(poly[None, None])[0]  # [4 orders, T]
        assert out.shape == (4, 20)
        assert out[degree + 1, degree + 1 :].abs().max() < 1e-9
        lead = 7.0 if degree == 0 else 2.0 + (0.5 if degree == 1 else 0.0)
        torch.testing.assert_close(out[degree, degree:], torch.full((20 - degree,), lead * math.factorial(degree),
                                                                    dtype=torch.float64))
    torch.testing.assert_close(pre(t[None, None])[0, 0], t)  # order 0 is the identity


def test_moving_average_residual() -> None:
    """u_t - mean(u_{t-m+1..t}): zero for a constant once the window is full, (m-1)/2 for a unit
    trend (the reference's identity kernel would return the input)."""
    windows = (4, 10)
    pre = PreprocessSSM(2, diff_orders=0, ma_windows=windows).double()
    const = torch.full((1, 1, 30), 5.0, dtype=torch.float64)
    trend = torch.arange(30, dtype=torch.float64)[None, None]
    out_const, out_trend = pre(const)[0], pre(trend)[0]
    for i, m in enumerate(windows):
        assert out_const[i, m - 1 :].abs().max() < 1e-9
        assert out_const[i, : m - 1].abs().min() > 0.1  # before the window is full the zero history counts
        torch.testing.assert_close(out_trend[i, m - 1 :], torch.full((30 - m + 1,), (m - 1) / 2, dtype=torch.float64))


def test_preprocessing_one_signal_equals_repeated_signal() -> None:
    """Filtering [N, 1, T] then repeating equals filtering the repeated [N, D, T] (the embedding's shortcut)."""
    pre = PreprocessSSM(8, diff_orders=2, ma_windows=(3, 5)).double()
    u = torch.randn(3, 1, 25, dtype=torch.float64)
    torch.testing.assert_close(pre(u), pre(u.expand(-1, 8, -1).contiguous()))
    assert not any(p.requires_grad for p in pre.parameters()) and not list(pre.state_dict())


# ---------------------------------------------------------------- closed loop
@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_closed_loop_matches_hand_stepped_recurrence(backend: str) -> None:
    """State after the lag by x_t = A x_{t-1} + b u_t; then each step feeds u = k^T x back in."""
    torch.manual_seed(0)
    layer = ClosedLoopCompanionSSM(model_dim=2, kernel_dim=3, backend=backend).double()
    randomise(layer, scale=0.5)
    u = torch.randn(2, 2, 7, dtype=torch.float64)
    y, u_hat = layer.forecast(u, horizon=5)
    a = normalise_a(layer.a)
    for n in range(2):
        for ch in range(2):
            A = torch.zeros(3, 3, dtype=torch.float64)
            A[1, 0] = A[2, 1] = 1.0
            A[:, 2] = a[ch]
            b, c, k = layer.b[ch], layer.c[ch], layer.k[ch]
            x = torch.zeros(3, dtype=torch.float64)
            for t in range(7):
                x = A @ x + b * u[n, ch, t]
            for h in range(5):
                torch.testing.assert_close(y[n, ch, h], c @ x)
                torch.testing.assert_close(u_hat[n, ch, h], k @ x)
                x = A @ x + b * (k @ x)
    # the first closed-loop step is the open-loop output after the last lag input
    torch.testing.assert_close(y[..., 0], layer(u)[..., -1])


def test_forecast_rolls_any_horizon() -> None:
    model = tiny()
    randomise(model, scale=0.1)
    x = series(2, L, 3)
    with torch.no_grad():
        short, long = model(x), model.forecast(x, horizon=3 * H)
    assert long.shape == (2, 3 * H, 3, len(model.quantiles))
    torch.testing.assert_close(long[:, :H], short, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- backends
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scan_backends_agree(dtype: torch.dtype) -> None:
    """Issue 6 acceptance: reference (recurrences) vs chunked (FFT kernels) change the forecast by < 1e-4 relative."""
    torch.manual_seed(0)
    ref = SpaceTime(SpaceTimeConfig.tiny(scan_backend="reference")).to(dtype).eval()
    randomise(ref, scale=0.2)
    chunked = SpaceTime(SpaceTimeConfig.tiny(scan_backend="chunked")).to(dtype).eval()
    chunked.load_state_dict(ref.state_dict())
    x = series(3, L, 4).to(dtype)
    with torch.no_grad():
        a, b = ref(x), chunked(x)
        loss_a = ref.training_loss(x, series(3, H, 4, seed=2).to(dtype))
        loss_b = chunked.training_loss(x, series(3, H, 4, seed=2).to(dtype))
    assert ((a - b).abs().max() / a.abs().max()) < 1e-4
    assert ((a - b).abs() / a.abs().clamp(min=1e-6)).max() < 1e-4
    assert abs(loss_a.item() - loss_b.item()) < 1e-4 * abs(loss_a.item())


# ---------------------------------------------------------------- inputs and configs
def test_mask_enters_the_embedding() -> None:
    model = tiny()
    randomise(model, scale=0.1)
    x = series(2, L, 2)
    mask = torch.ones_like(x)
    mask[:, :10] = 0
    values = x.where(mask > 0, torch.zeros(()))
    with torch.no_grad():
        masked = model(values, mask)
        model.mask_embedding.zero_()
        blind = model(values, mask)
    assert (masked - blind).abs().max() > 1e-3


def test_training_refuses_covariates_and_forecast_a_zero_horizon() -> None:
    model = tiny()
    x = series(2, L, 3)
    with pytest.raises(InputError, match="past_exog"):
        model.training_loss(x, series(2, H, 3), past_exog=series(2, L, 1))
    with pytest.raises(InputError, match="horizon"):
        model.forecast(x, horizon=0)


def test_config_validates_and_the_yaml_builds_the_defaults() -> None:
    for bad, match in [(dict(scan_backend="cuda"), "scan_backend"), (dict(model_dim=18), "first_block_kernels"),
                       (dict(model_dim=12, diff_orders=3), "preprocessing"),
                       (dict(ma_windows=(1, 4)), "ma_windows"), (dict(loss_weights=(1.0, 1.0)), "loss_weights"),
                       (dict(kernel_dim=0), "kernel_dim"), (dict(dropout=1.0), "dropout")]:
        with pytest.raises(InputError, match=match):
            SpaceTimeConfig.tiny(**bad)
    data = yaml.safe_load((REPO / "configs" / "model" / "spacetime.yaml").read_text())
    torch.manual_seed(0)
    default = build_model(data)
    assert default.config == SpaceTimeConfig()  # the yaml states the defaults
    assert (default.config.context_length, default.config.prediction_length) == (512, 96)
    assert 10_000 < default.num_parameters() < 3_000_000
    assert not default.capabilities.freq_token


# ---------------------------------------------------------------- training
def test_each_loss_term_counts() -> None:
    x, y = series(3, L, 2), series(3, H, 2, seed=2)
    losses = []
    for weights in [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]:
        model = tiny(loss_weights=weights)
        randomise(model, scale=0.1)
        with torch.no_grad():
            losses.append(model.training_loss(x, y).item())
    assert min(losses[:3]) > 0
    assert losses[3] == pytest.approx(sum(losses[:3]), rel=1e-5)


# ---------------------------------------------------------------- interfaces
def test_forecaster_predicts_with_a_spacetime_checkpoint(tmp_path) -> None:
    from tsfm import Forecaster

    model = tiny()
    randomise(model, scale=0.1)
    ckpt = save_pretrained(model, tmp_path / "tiny-spacetime")
    df = monthly_frame(3, length=40)
    fc = Forecaster(model=str(ckpt), horizon=5, quantiles=(0.1, 0.5, 0.9)).fit(df).predict()
    assert fc.groupby("unique_id").size().tolist() == [5, 5, 5]
    assert not fc.isna().any().any()
    assert (fc["0.1"] <= fc["0.5"]).all() and (fc["0.5"] <= fc["0.9"]).all()
    assert fc["0.5"].between(df.y.min() - 50, df.y.max() + 50).all()


