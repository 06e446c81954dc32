"""Backtest splits, metrics and relative aggregation (tsfm/evaluation.py).

Expected numbers are derived here from the definitions; GluonTS' own evaluation is the
reference for parity.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tsfm.errors import InputError
from tsfm.evaluation import (
    aggregate_relative,
    backtest_forecasts,
    backtest_splits,
    evaluate_forecasts,
    seasonal_error,
)

Q3 = (0.1, 0.5, 0.9)


def long_frame(series: dict[str, np.ndarray], freq: str = "D") -> pd.DataFrame:
    return pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2020-01-01", periods=len(y), freq=freq), "y": y})
            for uid, y in series.items()
        ],
        ignore_index=True,
    )


def one_window(y_context, y_actual, preds: dict[str, list[float]], uid="a"):
    """(forecast, actual, context) frames of one series and one window."""
    n, h = len(y_context), len(y_actual)
    ds = pd.date_range("2021-01-01", periods=n + h, freq="D")
    context = pd.DataFrame({"unique_id": uid, "ds": ds[:n], "y": np.asarray(y_context, float)})
    actual = pd.DataFrame({"unique_id": uid, "ds": ds[n:], "y": np.asarray(y_actual, float)})
    forecast = pd.DataFrame({"unique_id": uid, "ds": ds[n:], **{k: np.asarray(v, float) for k, v in preds.items()}})
    return forecast, actual, context


# ---------------------------------------------------------------- splits


def test_backtest_splits_boundaries():
    lengths = {"a": 20, "b": 13, "c": 31}
    df = long_frame({k: np.arange(n, dtype=float) + 100 * i for i, (k, n) in enumerate(lengths.items())})
    shuffled = df.sample(frac=1.0, random_state=0)
    h, n_windows = 4, 3
    splits = backtest_splits(shuffled, h, n_windows)
    assert len(splits) == n_windows
    for k, (context, actual) in enumerate(splits):
        for uid, n in lengths.items():
            ctx = context[context.unique_id == uid]
            act = actual[actual.unique_id == uid]
            start = n - (n_windows - k) * h  # index of the window's first point
            # the context is every point before the window, in order; the window is h points
            np.testing.assert_array_equal(ctx.y.to_numpy() % 100, np.arange(start))
            np.testing.assert_array_equal(act.y.to_numpy() % 100, np.arange(start, start + h))
            assert ctx.ds.max() < act.ds.min()
    tested = pd.concat([a for _, a in splits])
    assert len(tested) == n_windows * h * len(lengths)
    assert not tested.duplicated(["unique_id", "ds"]).any()


def test_backtest_splits_rejects_too_short_series():
    df = long_frame({"long": np.ones(20), "short": np.ones(8)})
    with pytest.raises(InputError, match="short"):
        backtest_splits(df, h=4, n_windows=2)  # 8 points leave no context before the windows


def test_backtest_forecasts_attaches_cutoff_and_actuals():
    df = long_frame({"a": np.arange(10.0), "b": np.arange(12.0) * 2})
    seen = []

    def last_value(context: pd.DataFrame) -> pd.DataFrame:
        seen.append(context)
        rows = []
        for uid, g in context.groupby("unique_id"):
            ds = pd.date_range(g.ds.max(), periods=4, freq="D")[1:]
            rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, "0.5": g.y.iloc[-1]}))
        return pd.concat(rows)

    cv = backtest_forecasts(last_value, df, h=3, n_windows=2)
    assert len(cv) == 2 * 3 * 2 and len(seen) == 2
    assert list(cv.columns[:4]) == ["unique_id", "ds", "cutoff", "y"]
    first_a = cv[(cv.unique_id == "a")].iloc[0]
    assert first_a.cutoff == pd.Timestamp("2020-01-04") and first_a.y == 4.0 and first_a["0.5"] == 3.0
    assert (cv.ds > cv.cutoff).all()
    for context in seen:  # no leakage: forecasts only see points before their window
        assert context.groupby("unique_id").ds.max().lt(cv.groupby("unique_id").ds.max()).all()


def test_backtest_forecasts_rejects_missing_rows():
    df = long_frame({"a": np.arange(10.0), "b": np.arange(10.0)})

    def only_a(context: pd.DataFrame) -> pd.DataFrame:
        ds = pd.date_range(context.ds.max(), periods=3, freq="D")[1:]
        return pd.DataFrame({"unique_id": "a", "ds": ds, "0.5": 0.0})

    with pytest.raises(InputError, match="no forecast"):
        backtest_forecasts(only_a, df, h=2)


# ---------------------------------------------------------------- metrics by hand


def test_perfect_forecast_scores_zero():
    y = [3.0, 5.0, 4.0]
    forecast, actual, context = one_window([1.0, 2.0, 4.0, 3.0], y, {q: y for q in ("0.1", "0.5", "0.9")})
    scores = evaluate_forecasts(forecast, actual, context, m=1, quantiles=Q3)
    assert scores["MASE"] == 0 and scores["sMAPE"] == 0 and scores["WQL"] == 0
    assert scores["coverage_10_90"] == 1.0 and scores["n_points"] == 3


def test_seasonal_naive_on_trend_plus_season_has_mase_one():
    # y_t = s[t mod m] + c t: every in-sample seasonal difference is c*m, and so is every error
    # of the seasonal naive forecast y_{T+j-m} for j <= m, so MASE is exactly 1.
    m, c, n, h = 4, 0.5, 24, 4
    t = np.arange(n + h)
    y = np.array([3.0, -1.0, 2.0, 0.5])[t % m] + c * t
    naive = y[n - m : n - m + h]
    forecast, actual, context = one_window(y[:n], y[n:], {"0.1": naive - 1, "0.5": naive, "0.9": naive + 1})
    scores = evaluate_forecasts(forecast, actual, context, m=m, quantiles=Q3)
    assert scores["MASE"] == pytest.approx(1.0, abs=1e-12)


def test_naive_one_step_on_constant_step_walk_has_mase_one():
    # a walk whose steps are all +-2: in-sample mean |y_t - y_{t-1}| is 2, and so is the error of
    # the last-value forecast one step ahead.
    steps = np.array([2.0, -2.0, 2.0, 2.0, -2.0, -2.0, 2.0])
    y = np.concatenate([[10.0], 10.0 + np.cumsum(steps)])
    forecast, actual, context = one_window(y[:-1], y[-1:], {"0.1": [y[-2]], "0.5": [y[-2]], "0.9": [y[-2]]})
    assert evaluate_forecasts(forecast, actual, context, m=1, quantiles=Q3)["MASE"] == pytest.approx(1.0)


def test_hand_computed_values():
    # context [0, 2, 1, 4] with m = 1: seasonal error = (2 + 1 + 3) / 3 = 2
    # actual [10, 0], median forecast [12, 0]
    #   MASE = mean(|10-12|/2, 0/2) = 0.5
    #   sMAPE = 100 * mean(2*2/(10+12), 0 (0/0 counts as zero error)) = 100 * 2/22
    # quantile losses 2|(y-f)(1{y<=f}-q)|, sum |y| = 10:
    #   q=0.1, f=[9, -1] (both below y): 2*1*0.1 + 2*1*0.1 = 0.4 -> 0.04
    #   q=0.5, f=[12, 0]:                 2*2*0.5 + 0       = 2.0 -> 0.2
    #   q=0.9, f=[13, 1] (both above y):  2*3*0.1 + 2*1*0.1 = 0.8 -> 0.08
    #   WQL = (0.04 + 0.2 + 0.08) / 3 = 0.32 / 3
    # coverage: 9 <= 10 <= 13 and -1 <= 0 <= 1 -> 1.0
    preds = {"0.1": [9.0, -1.0], "0.5": [12.0, 0.0], "0.9": [13.0, 1.0]}
    forecast, actual, context = one_window([0.0, 2.0, 1.0, 4.0], [10.0, 0.0], preds)
    scores = evaluate_forecasts(forecast, actual, context, m=1, quantiles=Q3)
    assert scores["MASE"] == pytest.approx(0.5)
    assert scores["sMAPE"] == pytest.approx(100 * 2 / 22)
    assert scores["WQL"] == pytest.approx(0.32 / 3)
    assert scores["coverage_10_90"] == 1.0


def test_wql_is_a_ratio_of_sums_over_series():
    # series a (scale 100) has loss, series b (scale 1) is perfect: pooled WQL weights a by its scale
    fa, aa, ca = one_window([100.0, 101.0], [100.0], {"0.1": [90.0], "0.5": [110.0], "0.9": [120.0]}, uid="a")
    fb, ab, cb = one_window([1.0, 2.0], [1.0], {"0.1": [1.0], "0.5": [1.0], "0.9": [1.0]}, uid="b")
    scores = evaluate_forecasts(pd.concat([fa, fb]), pd.concat([aa, ab]), pd.concat([ca, cb]), m=1, quantiles=Q3)
    # a: q0.1 -> 2*10*0.1 = 2, q0.5 -> 2*10*0.5 = 10, q0.9 -> 2*20*0.1 = 4; sum |y| = 101
    assert scores["WQL"] == pytest.approx((2 / 101 + 10 / 101 + 4 / 101) / 3)
    # MASE averages the per-series scaled errors: a: 10/1, b: 0
    assert scores["MASE"] == pytest.approx(5.0)


def test_coverage_counts_points_inside_the_band():
    preds = {"0.1": [0.0, 0.0, 0.0, 0.0], "0.5": [1.0] * 4, "0.9": [2.0] * 4}
    forecast, actual, context = one_window([1.0, 2.0, 3.0], [-0.5, 0.0, 2.0, 2.5], preds)
    assert evaluate_forecasts(forecast, actual, context, m=1, quantiles=Q3)["coverage_10_90"] == 0.5


def test_mase_scale_uses_only_points_before_each_window():
    # windows of a series whose history changes slope: the scale of window k is the mean step
    # of the points before it, not of the whole series.
    y = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 11.0])
    df = long_frame({"a": y})

    def zero(context: pd.DataFrame) -> pd.DataFrame:
        ds = pd.date_range(context.ds.max(), periods=3, freq="D")[1:]
        return pd.DataFrame({"unique_id": "a", "ds": ds, "0.5": context.y.iloc[-1]})

    cv = backtest_forecasts(zero, df, h=2, n_windows=2)
    scores = evaluate_forecasts(cv, cv, df, m=1, quantiles=(0.5,))
    # window 0: context y[:4], steps 1,1,1 -> scale 1; errors |5-3|, |7-3| -> 2, 4
    # window 1: context y[:6], steps 1,1,1,2,2 -> scale 7/5
    #           errors |9-7|, |11-7| -> 2, 4
    expected = np.mean([2 / 1, 4 / 1, 2 / (7 / 5), 4 / (7 / 5)])
    assert scores["MASE"] == pytest.approx(expected)
    # the same score when the context frame holds only each window's own history
    assert evaluate_forecasts(cv, cv, df.iloc[:6], m=1, quantiles=(0.5,))["MASE"] == pytest.approx(expected)


def test_seasonal_error_falls_back_to_one_when_m_is_too_long():
    y = np.array([1.0, 4.0, 2.0, 8.0])
    assert seasonal_error(y, 1) == pytest.approx((3 + 2 + 6) / 3)
    assert seasonal_error(y, 2) == pytest.approx((1 + 4) / 2)
    assert seasonal_error(y, 10) == seasonal_error(y, 1)
    assert seasonal_error(y, 4) == seasonal_error(y, 1)  # m == len leaves no pair
    assert seasonal_error(np.array([1.0, np.nan, 2.0, 4.0]), 1) == pytest.approx(2.0)  # NaN pairs ignored
    assert math.isnan(seasonal_error(np.array([5.0]), 1))


def test_constant_history_is_left_out_of_mase():
    fa, aa, ca = one_window([3.0, 3.0, 3.0], [4.0], {"0.5": [3.0]}, uid="flat")
    fb, ab, cb = one_window([1.0, 3.0, 5.0], [9.0], {"0.5": [5.0]}, uid="ramp")
    scores = evaluate_forecasts(pd.concat([fa, fb]), pd.concat([aa, ab]), pd.concat([ca, cb]), m=1, quantiles=(0.5,))
    assert scores["MASE"] == pytest.approx(2.0) and scores["n_mase_skipped"] == 1
    assert scores["sMAPE"] == pytest.approx(100 * np.mean([2 / 7, 8 / 14]))


def test_nan_actuals_are_not_scored():
    forecast, actual, context = one_window([1.0, 2.0], [np.nan, 4.0], {"0.5": [9.0, 3.0]})
    scores = evaluate_forecasts(forecast, actual, context, m=1, quantiles=(0.5,))
    assert scores["n_points"] == 1 and scores["MASE"] == pytest.approx(1.0)


def test_bad_inputs_raise_input_error():
    forecast, actual, context = one_window([1.0, 2.0], [3.0], {"0.5": [3.0]})
    with pytest.raises(InputError, match="0.5"):
        evaluate_forecasts(forecast, actual, context, m=1, quantiles=(0.1, 0.9))
    with pytest.raises(InputError, match=r"missing column\(s\) 0.9"):
        evaluate_forecasts(forecast, actual, context, m=1, quantiles=(0.5, 0.9))
    with pytest.raises(InputError, match="NaN"):
        evaluate_forecasts(forecast.assign(**{"0.5": np.nan}), actual, context, m=1, quantiles=(0.5,))
    with pytest.raises(InputError, match="'ds' has different types"):
        evaluate_forecasts(forecast.assign(ds=forecast.ds.astype(str)), actual, context, m=1, quantiles=(0.5,))


# ---------------------------------------------------------------- parity with GluonTS


def test_parity_with_gluonts_ev():
    from gluonts.dataset.common import ListDataset
    from gluonts.dataset.split import split
    from gluonts.ev.metrics import MASE, SMAPE, MeanWeightedSumQuantileLoss
    from gluonts.model.evaluation import evaluate_forecasts as gluonts_evaluate
    from gluonts.model.forecast import QuantileForecast

    rng = np.random.default_rng(7)
    h, n_windows, m = 5, 3, 4
    quantiles = (0.1, 0.2, 0.5, 0.8, 0.9)
    series = {f"s{i}": 20 + np.cumsum(rng.normal(0, 2, n)) for i, n in enumerate([30, 41, 26, 7 + 15])}
    df = long_frame(series)

    def noisy(context: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for uid, g in context.groupby("unique_id", sort=False):
            ds = pd.date_range(g.ds.max(), periods=h + 1, freq="D")[1:]
            centre = g.y.iloc[-1] + rng.normal(0, 1, h)
            spread = np.abs(rng.normal(2, 1, h))
            cols = {str(q): centre + spread * (q - 0.5) * 2.5 for q in quantiles}
            rows.append(pd.DataFrame({"unique_id": uid, "ds": ds, **cols}))
        return pd.concat(rows)

    cv = backtest_forecasts(noisy, df, h, n_windows)
    ours = evaluate_forecasts(cv, cv, df, m=m, quantiles=quantiles)

    dataset = ListDataset(
        [{"start": pd.Period("2020-01-01", freq="D"), "target": y, "item_id": uid} for uid, y in series.items()],
        freq="D",
    )
    _, template = split(dataset, offset=-h * n_windows)
    test_data = template.generate_instances(prediction_length=h, windows=n_windows)
    forecasts = []
    for _, label in test_data:
        start = label["start"].to_timestamp()
        rows = cv[(cv.unique_id == label["item_id"]) & (cv.ds >= start)].iloc[:h]
        keys = [str(q) for q in quantiles]
        forecasts.append(
            QuantileForecast(rows[keys].to_numpy().T, start_date=label["start"], forecast_keys=keys,
                             item_id=label["item_id"])
        )
    metrics = [MASE(), SMAPE(), MeanWeightedSumQuantileLoss(quantile_levels=quantiles)]
    theirs = gluonts_evaluate(forecasts, test_data=test_data, metrics=metrics, seasonality=m).iloc[0]
    # QuantileForecast keeps float32 arrays, hence the tolerance
    assert ours["MASE"] == pytest.approx(theirs["MASE[0.5]"], rel=1e-6)
    assert ours["sMAPE"] == pytest.approx(100 * theirs["sMAPE[0.5]"], rel=1e-6)
    assert ours["WQL"] == pytest.approx(theirs["mean_weighted_sum_quantile_loss"], rel=1e-6)


# ---------------------------------------------------------------- aggregation


def test_aggregate_relative_is_a_geometric_mean_of_ratios():
    scores = {
        "t1": {"SeasonalNaive": {"MASE": 2.0, "WQL": 0.2}, "m": {"MASE": 4.0, "WQL": 0.1}},
        "t2": {"SeasonalNaive": {"MASE": 1.0, "WQL": 0.4}, "m": {"MASE": 0.5, "WQL": 0.1}},
        "t3": {"SeasonalNaive": {"MASE": 3.0, "WQL": 1.0}, "m": {"MASE": 3.0, "WQL": 2.0}},
    }
    rel = aggregate_relative(scores, metrics=("MASE", "WQL"))
    assert rel["SeasonalNaive"] == {"MASE": 1.0, "WQL": 1.0}
    assert rel["m"]["MASE"] == pytest.approx((2.0 * 0.5 * 1.0) ** (1 / 3))  # = 1
    assert rel["m"]["WQL"] == pytest.approx((0.5 * 0.25 * 2.0) ** (1 / 3))


def test_aggregate_relative_never_drops_a_task_silently():
    scores = {
        "t1": {"SeasonalNaive": {"MASE": 2.0}, "m": {"MASE": 1.0}, "perfect": {"MASE": 0.0}},
        "t2": {"SeasonalNaive": {"MASE": 1.0}, "perfect": {"MASE": 0.0}},  # m failed here
    }
    rel = aggregate_relative(scores, metrics=("MASE",))
    assert math.isnan(rel["m"]["MASE"]) and rel["perfect"]["MASE"] == 0.0
    with pytest.raises(InputError, match="baseline 'Naive'"):
        aggregate_relative(scores, baseline="Naive", metrics=("MASE",))


def test_mase_and_smape_average_each_window_before_the_windows():
    """With NaN actuals a window's few scored points weigh as much as a full window's (GluonTS per item):
    a's one scored error of 2 (scale 1) and b's three errors of 0 average to 1, not to 0.5."""
    fa, aa, ca = one_window([0, 1, 0, 1], [np.nan, 3, np.nan], {"0.5": [0, 1, 0]}, uid="a")
    fb, ab, cb = one_window([0, 1, 0, 1], [5, 5, 5], {"0.5": [5, 5, 5]}, uid="b")
    scores = evaluate_forecasts(pd.concat([fa, fb]), pd.concat([aa, ab]), pd.concat([ca, cb]), m=1,
                                quantiles=(0.5,))
    assert scores["MASE"] == pytest.approx(1.0)
    assert scores["sMAPE"] == pytest.approx(100.0 * (2 * 2 / 4) / 2)
    assert scores["n_points"] == 4


def test_duplicate_actuals_mixed_time_zones_are_refused_and_integer_ids_match_text_ones():
    forecast, actual, context = one_window([1, 2, 3, 4], [5, 6], {"0.5": [5, 6]}, uid="7")
    with pytest.raises(InputError, match="actual frame has duplicate"):
        evaluate_forecasts(forecast, pd.concat([actual, actual.iloc[:1]]), context, m=1, quantiles=(0.5,))
    aware = forecast.assign(ds=forecast["ds"].dt.tz_localize("UTC"))
    with pytest.raises(InputError, match="time zone"):
        evaluate_forecasts(aware, actual, context, m=1, quantiles=(0.5,))
    as_int = [f.assign(unique_id=7) for f in (actual, context)]
    assert evaluate_forecasts(forecast, *as_int, m=1, quantiles=(0.5,))["MASE"] == 0.0
