"""Quantile aggregation (issue 28): simplex weights per level, re-sorting, shrinkage, calibration of the
aggregated intervals, member failures, persistence, and ``--ensemble auto`` on the command line.

Fast: tiny series, the tiny TTM checkpoint of conftest as the default member, and only the cheap
statistical members (SeasonalNaive, AutoTheta) unless a test says otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from conftest import monthly_frame
from tsfm import Forecaster, aggregation, auto, statistical
from tsfm_runtime import aggregate, rules

GRID = auto.GRID


@pytest.fixture()
def small_ensemble(monkeypatch, tiny_checkpoint, one_torch_thread):
    """``model="auto"`` with the tiny TTM as its default member and two cheap statistical members."""
    monkeypatch.setattr(auto, "DEFAULT_SOURCE", str(tiny_checkpoint))
    monkeypatch.setattr(auto, "ORDER", ("SeasonalNaive", "ttm", "AutoTheta"))


def backtests(n_series: int, n_windows: int, seed: int = 0, spread=(1.0, 1.0, 1.0), bias=(0.0, 0.0, 0.0),
              miss=(0.0, 0.0, 0.0)):
    """Three members forecasting N(0, 2) noise around a level: Gaussian quantiles of their own spread and
    bias, centred on the level missed by N(0, miss) per point."""
    rng = np.random.default_rng(seed)
    h = 6
    points = n_series * n_windows * h
    level = np.repeat(rng.uniform(10, 100, n_series * n_windows), h)
    actual = level + rng.normal(0, 2, points)
    z = norm.ppf(GRID)
    forecasts = np.stack([level[:, None] + b + e * rng.normal(size=(points, 1)) + s * z[None, :]
                          for s, b, e in zip(spread, bias, miss)])
    window = np.tile(np.repeat(np.arange(n_windows), h), n_series)
    unit = np.repeat(np.arange(n_series * n_windows), h)
    return aggregation.Backtests(forecasts, actual, np.full(points, 2.0), window, unit)


# ----------------------------------------------------------------------------- weights
def test_weights_are_a_simplex_per_level_and_prefer_the_right_member():
    data = backtests(60, 3, spread=(0.5, 2.0, 6.0), bias=(0.0, 0.0, 3.0), miss=(3.0, 0.0, 3.0))  # the second is right
    weights = aggregation.fit_weights(data, GRID)
    assert weights.shape == (3, len(GRID))
    assert np.all(weights >= 0) and np.allclose(weights.sum(axis=0), 1.0)
    assert np.all(weights[1] > weights[0]) and np.all(weights[1] > weights[2])
    aggregate.check_weights(weights, 3, len(GRID))  # what the runtime accepts


def test_solver_reaches_the_linear_programme_optimum():
    """The pinball loss over the simplex is an LP: the exponentiated-gradient weights score within 0.5% of it."""
    from scipy.optimize import linprog

    data = backtests(20, 2, seed=3, spread=(0.5, 2.0, 6.0), bias=(1.0, -0.5, 2.0))
    x, y, q = data.forecasts[:, :, 2] / 2.0, data.actual / 2.0, GRID[2]  # level 0.3, scaled
    w = aggregation.simplex_weights(data.forecasts[:, :, 2:3] / 2.0, y, [q])[:, 0]
    m, p = x.shape
    # minimise mean(q u + (1 - q) v) with y - x'w = u - v, u, v >= 0, w on the simplex
    cost = np.concatenate([np.zeros(m), np.full(p, q / p), np.full(p, (1 - q) / p)])
    a_eq = np.block([[x.T, np.eye(p), -np.eye(p)], [np.ones((1, m)), np.zeros((1, 2 * p))]])
    lp = linprog(cost, A_eq=a_eq, b_eq=np.concatenate([y, [1.0]]), bounds=[(0, None)] * (m + 2 * p))
    ours = aggregation.pinball(y, (w @ x)[:, None], [q]).mean()
    assert lp.success and ours <= lp.fun * 1.005 + 1e-9


def test_shrinkage_toward_equal_weights_and_one_window_gives_equal_weights():
    fitted = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    shrunk = aggregation.shrink(fitted, n_units=10, k=10)
    np.testing.assert_allclose(shrunk, (fitted + 1 / 3) / 2)
    one = aggregation.fit_weights(backtests(50, 1, spread=(0.5, 2.0, 6.0)), GRID)
    np.testing.assert_allclose(one, np.full((3, len(GRID)), 1 / 3))
    few = aggregation.fit_weights(backtests(1, 3, spread=(0.5, 2.0, 6.0)), GRID)  # 3 units: mostly equal
    many = aggregation.fit_weights(backtests(200, 3, spread=(0.5, 2.0, 6.0)), GRID)
    assert np.abs(few - 1 / 3).max() < np.abs(many - 1 / 3).max()


def test_the_prior_and_what_n_counts_are_rules_of_their_own():
    data = backtests(2, 3, spread=(0.5, 2.0, 6.0), miss=(3.0, 0.0, 3.0))  # 6 units, 36 points
    prior = np.array([1.0, 0.0, 0.0])
    assert np.allclose(aggregation.fit_weights(backtests(5, 1), GRID, prior=prior), prior[:, None])  # one window
    toward_first = aggregation.fit_weights(data, GRID, prior=prior)
    assert np.all(toward_first[0] > aggregation.fit_weights(data, GRID)[0])
    by_points = aggregation.fit_weights(data, GRID, count="points")  # n = 36: closer to the fit
    assert np.abs(by_points - 1 / 3).max() > np.abs(aggregation.fit_weights(data, GRID) - 1 / 3).max()


# ----------------------------------------------------------------------------- combining
def test_resorting_never_raises_the_pinball_loss():
    """Two members whose weighted average crosses (0.3 above 0.7): sorting lowers or keeps the loss for
    every outcome, and combine() returns the sorted vector."""
    levels = (0.3, 0.5, 0.7)
    a = np.array([[[[10.0, 11.0, 12.0]]]])  # [N=1, h=1, C=1, Q=3]
    b = np.array([[[[20.0, 5.0, 0.0]]]])  # a member whose levels cross badly
    weights = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    raw = 0.5 * a + 0.5 * b  # 15, 8, 6: crossing
    combined = aggregate.combine([a, b], weights)
    np.testing.assert_allclose(combined, np.sort(raw, axis=-1))
    outcomes = np.linspace(-5, 30, 701)
    unsorted = aggregation.pinball(outcomes[:, None], np.broadcast_to(raw[0, 0], (701, 1, 3)), levels).sum(-1)
    resorted = aggregation.pinball(outcomes[:, None], np.broadcast_to(combined[0, 0], (701, 1, 3)), levels).sum(-1)
    assert np.all(resorted <= unsorted + 1e-12) and np.any(resorted < unsorted - 1e-6)


def test_combine_renormalises_over_the_members_a_series_has():
    members = np.stack([np.full((2, 3, 1, 9), 1.0), np.full((2, 3, 1, 9), 3.0)])
    members[1, 0] = np.nan  # the second member failed on the first series
    weights = np.full((2, 9), 0.5)
    out = aggregate.combine(members, weights)
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], 2.0)
    saved = {"format": aggregate.FORMAT, "members": ["a", "b"], "levels": list(GRID), "weights": weights.tolist(),
             "widening": [0.0] * 4}
    np.testing.assert_allclose(aggregate.combine_saved(saved, {"a": members[0]}), 1.0)  # b not on the device


def test_the_default_path_loads_no_ensemble_code(tiny_checkpoint):
    code = ("import sys; from conftest import monthly_frame; from tsfm import Forecaster; "
            f"Forecaster(model={str(tiny_checkpoint)!r}, horizon=3).fit(monthly_frame(1)).predict(); "
            "assert not {'tsfm.auto', 'tsfm.aggregation', 'statsforecast'} & set(sys.modules), 'ensemble code loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_runtime_aggregation_imports_nothing_of_tsfm():
    code = "import sys, tsfm_runtime.aggregate; assert not any(m.split('.')[0] == 'tsfm' for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- calibration
def test_calibration_of_the_aggregate_reaches_nominal_coverage_on_exchangeable_data():
    """Members that think the noise is N(0, 1) when it is N(0, 2): their aggregate's 80% interval covers
    about half; calibrated from leave-one-window-out aggregates of 4 windows, it covers 80% of fresh data."""
    fit = backtests(100, 4, seed=1, spread=(1.0, 0.8, 1.2))
    weights = aggregation.fit_weights(fit, GRID)
    widening = aggregation.calibration(fit, GRID)
    assert widening.shape == (4,) and np.all(widening > 0)
    test = backtests(200, 4, seed=2, spread=(1.0, 0.8, 1.2))
    raw = aggregate.combine(test.forecasts, weights)
    calibrated = aggregate.apply(test.forecasts, weights, GRID, widening)
    for (lo, hi), nominal in zip(rules.interval_pairs(GRID), (0.8, 0.6, 0.4, 0.2)):
        before = np.mean((test.actual >= raw[:, lo]) & (test.actual <= raw[:, hi]))
        after = np.mean((test.actual >= calibrated[:, lo]) & (test.actual <= calibrated[:, hi]))
        assert before < 0.7 * nominal and abs(after - nominal) < 0.03, (nominal, before, after)


# ----------------------------------------------------------------------------- statistical members
def test_statsforecast_intervals_become_quantiles():
    assert statistical.interval_levels(GRID) == [20, 40, 60, 80]
    raw = {"mean": np.array([5.0]), "lo-80": np.array([1.0]), "hi-80": np.array([9.0]), "lo-20": np.array([4.0]),
           "hi-20": np.array([6.0])}
    np.testing.assert_allclose(statistical.to_quantiles(raw, (0.1, 0.4, 0.5, 0.6, 0.9)), [[1, 4, 5, 6, 9]])


# ----------------------------------------------------------------------------- the Forecaster
def test_auto_forecaster_fits_weights_and_says_so(small_ensemble):
    f = Forecaster(model="auto", horizon=6, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)).fit(monthly_frame(3))
    fc = f.predict()
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.25", "0.5", "0.75", "0.9"]
    assert len(fc) == 18 and np.isfinite(fc.drop(columns=["unique_id", "ds"]).to_numpy()).all()
    assert np.all(np.diff(fc[["0.1", "0.25", "0.5", "0.75", "0.9"]].to_numpy(), axis=1) >= 0)
    assert [m.name for m in f.model_.members] == ["SeasonalNaive", "ttm", "AutoTheta"]
    assert f.model_.windows == auto.MAX_WINDOWS
    lines = f.plan_.reason.splitlines()
    assert lines[0].startswith("ensemble auto: SeasonalNaive, ttm (") and "weights fitted on 4 backtests" in lines[0]
    assert lines[1].startswith("weights at 0.1/0.5/0.9:") and lines[1].endswith("; not calibrated")
    assert not f.model_.widening.any()  # calibration is opt-in (calibration_windows > 0)


def test_a_member_failing_on_some_series_degrades_to_the_others(small_ensemble, monkeypatch):
    class Failing:  # AutoTheta that raises on the series whose level is above 115
        def __init__(self, inner):
            self.inner = inner

        def _check(self, y):
            if np.nanmean(y) > 115:
                raise ValueError("no suitable model found")

        def forecast(self, y, h, level):
            self._check(y)
            return self.inner.forecast(y=y, h=h, level=level)

        def fit(self, y):
            self._check(y)
            self.inner.fit(y=y)
            return self

        def predict(self, h, level):
            return self.inner.predict(h=h, level=level)

        def forward(self, y, h, level):
            self._check(y)
            return self.inner.forward(y=y, h=h, level=level)

    build = statistical.StatsMember.build
    monkeypatch.setattr(statistical.StatsMember, "build",
                        lambda self, season: Failing(build(self, season)) if self.model == "AutoTheta"
                        else build(self, season))
    f = Forecaster(model="auto", horizon=6, num_threads=1).fit(monthly_frame(3))  # levels 100, 110, 120
    assert any("AutoTheta failed on 1 of 3 series in the backtests" in line for line in f.model_.lines)
    fc = f.predict()
    assert np.isfinite(fc[["0.1", "0.5", "0.9"]].to_numpy()).all()
    assert any("AutoTheta failed on 1 of 3 series in the forecasts" in note for note in f.notes_)


def test_series_too_short_for_a_backtest_use_the_default_model_alone(small_ensemble, tiny_checkpoint):
    df = monthly_frame(2, length=20)
    f = Forecaster(model="auto", horizon=6).fit(df)
    assert [m.name for m in f.model_.members] == ["ttm"]
    assert "no series is long enough for a backtest" in f.plan_.reason and len(f.plan_.reason.splitlines()) == 1
    alone = Forecaster(model=str(tiny_checkpoint), horizon=6, calibration_windows=0).fit(df).predict()
    pd.testing.assert_frame_equal(f.predict(), alone, rtol=1e-5)


def test_save_and_load_reuse_the_weights_without_refitting(small_ensemble, tmp_path, monkeypatch):
    f = Forecaster(model="auto", horizon=6, calibration_windows=4).fit(monthly_frame(3))
    assert f.model_.widening.any()
    before = f.predict()
    f.save(tmp_path / "saved")
    assert (tmp_path / "saved" / auto.FILE).is_file()

    def refit(*args, **kwargs):
        raise AssertionError("the loaded ensemble refitted its weights")

    monkeypatch.setattr(aggregation, "fit_weights", refit)
    monkeypatch.setattr(auto, "fit", refit)
    loaded = Forecaster.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.model_.weights, f.model_.weights)
    np.testing.assert_allclose(loaded.model_.widening, f.model_.widening)
    pd.testing.assert_frame_equal(loaded.predict(), before, rtol=1e-5)


def test_cli_ensemble_auto_says_members_weights_and_calibration(small_ensemble, tmp_path):
    from tsfm.cli.main import app

    path = tmp_path / "data.csv"
    monthly_frame(3).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["forecast", str(path), "--ensemble", "auto", "--horizon", "6",
                                      "--num-threads", "1", "--calibration-windows", "3"])
    assert result.exit_code == 0, result.stderr
    assert "ensemble auto: SeasonalNaive, ttm" in result.stderr
    assert "calibrated (conformal, leave-one-window-out" in result.stderr
    assert len(pd.read_csv(__import__("io").StringIO(result.stdout))) == 18
    bad = CliRunner().invoke(app, ["forecast", str(path), "--ensemble", "best"])
    assert bad.exit_code == 2 and "--ensemble auto" in bad.stderr
