"""The scikit-learn-style Forecaster: contract, conventions, backtests, persistence."""

import numpy as np
import pandas as pd
import pytest

from conftest import monthly_frame
from tsfm import Forecaster
from tsfm.errors import InputError
from tsfm.forecaster import NotFittedError


def test_predict_contract(tiny_checkpoint):
    df = monthly_frame()
    fc = Forecaster(model=str(tiny_checkpoint), horizon=7, quantiles=(0.1, 0.5, 0.9)).fit(df).predict()
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"]
    assert fc.groupby("unique_id").size().tolist() == [7, 7, 7]
    assert not fc.isna().any().any()
    assert (fc["0.1"] <= fc["0.5"]).all() and (fc["0.5"] <= fc["0.9"]).all()
    np.testing.assert_allclose(fc["mean"], fc["0.5"])
    for sid, rows in fc.groupby("unique_id"):
        last = df[df.unique_id == sid].ds.max()
        expected = pd.date_range(last, periods=8, freq="MS")[1:]
        assert list(rows.ds) == list(expected)


def test_horizon_longer_than_model_rolls_out(tiny_checkpoint):
    df = monthly_frame(1)
    f = Forecaster(model=str(tiny_checkpoint), horizon=40).fit(df)  # model horizon is 16
    fc = f.predict()
    assert len(fc) == 40 and not fc.isna().any().any()
    short = f.predict(h=16)
    np.testing.assert_allclose(fc["0.5"].to_numpy()[:16], short["0.5"].to_numpy(), rtol=1e-5)


def test_default_horizon_from_frequency(tiny_checkpoint):
    f = Forecaster(model=str(tiny_checkpoint)).fit(monthly_frame(1))
    assert f.horizon_ == 18 and len(f.predict()) == 18


def test_wide_and_long_give_the_same_forecast(tiny_checkpoint):
    long = monthly_frame(2, length=50)
    wide = long.pivot(index="ds", columns="unique_id", values="y").reset_index()
    a = Forecaster(model=str(tiny_checkpoint), horizon=5).fit(long).predict()
    b = Forecaster(model=str(tiny_checkpoint), horizon=5).fit(wide).predict()
    pd.testing.assert_frame_equal(a, b)


def test_constant_series_gets_constant_forecast(tiny_checkpoint):
    df = monthly_frame(1)
    df["y"] = 42.0
    fc = Forecaster(model=str(tiny_checkpoint), horizon=4).fit(df).predict()
    assert (fc[["mean", "0.1", "0.5", "0.9"]] == 42.0).all().all()


def test_sklearn_conventions(tiny_checkpoint):
    from sklearn.base import clone

    f = Forecaster(model=str(tiny_checkpoint), horizon=3, quantiles=(0.2, 0.5, 0.8))
    g = clone(f)
    assert g.get_params() == f.get_params() and g is not f
    assert f.set_params(horizon=4) is f and f.horizon == 4
    with pytest.raises(NotFittedError, match="not fitted"):
        f.predict()
    assert f.fit(monthly_frame(1)) is f and f.__sklearn_is_fitted__()
    with pytest.raises(ValueError, match="invalid parameter"):
        f.set_params(nope=1)


def test_quantile_names_are_kept_as_written(tiny_checkpoint):
    fc = Forecaster(model=str(tiny_checkpoint), horizon=2, quantiles=("0.10", "0.5", "0.90")).fit(
        monthly_frame(1)).predict()
    assert list(fc.columns[-3:]) == ["0.10", "0.5", "0.90"]


def test_bad_quantiles_and_horizon(tiny_checkpoint):
    df = monthly_frame(1)
    with pytest.raises(InputError, match="outside"):
        Forecaster(model=str(tiny_checkpoint), quantiles=(0.5, 1.5)).fit(df)
    with pytest.raises(InputError, match="horizon"):
        Forecaster(model=str(tiny_checkpoint), horizon=0).fit(df)
    with pytest.raises(InputError, match="model's range"):
        Forecaster(model=str(tiny_checkpoint), horizon=2, quantiles=(0.01, 0.5)).fit(df).predict()
    with pytest.raises(InputError, match="nonnegative"):
        Forecaster(model=str(tiny_checkpoint), horizon=2, nonnegative="auto").fit(df)


def test_cross_validation_windows(tiny_checkpoint):
    df = monthly_frame(2, length=60)
    f = Forecaster(model=str(tiny_checkpoint), horizon=6)
    cv = f.cross_validation(df, h=6, n_windows=3)
    assert list(cv.columns[:3]) == ["unique_id", "ds", "cutoff"] and "y" in cv
    assert len(cv) == 2 * 3 * 6
    merged = cv.merge(df, on=["unique_id", "ds"], suffixes=("", "_true"))
    np.testing.assert_allclose(merged["y"], merged["y_true"])  # y is the actual value at ds
    written = df.assign(y=(df["y"] + 0.1).round(1))  # decimals float32 cannot hold exactly, as a CSV gives them
    merged = f.cross_validation(written, h=6, n_windows=1).merge(written, on=["unique_id", "ds"], suffixes=("", "_in"))
    assert len(merged) == 12 and (merged["y"] == merged["y_in"]).all()  # the numbers as written, not float32's
    assert (cv["ds"] > cv["cutoff"]).all()
    assert cv.groupby("unique_id")["cutoff"].nunique().tolist() == [3, 3]


@pytest.mark.parametrize("fill", ["ffill", "interpolate", "zero"])
def test_a_backtest_fills_each_window_from_its_own_past(tiny_checkpoint, fill):
    """A gap just before a cutoff is filled from the history before it, never toward the values the
    window scores; missing actuals stay missing and are not scored."""
    df = monthly_frame(1, length=60)
    df.loc[53, "y"] = np.nan  # the last point before the cutoff of a 6-step window
    df.loc[54, "y"] = 1e4  # an outlier just after it
    df.loc[59, "y"] = np.nan  # an actual nobody observed
    f = Forecaster(model=str(tiny_checkpoint), horizon=6, fill=fill, calibration_windows=0)
    cv = f.cross_validation(df, h=6)
    alone = Forecaster(model=str(tiny_checkpoint), horizon=6, fill=fill, calibration_windows=0).fit(df.head(54))
    np.testing.assert_allclose(cv["0.5"], alone.predict()["0.5"], rtol=1e-5)
    assert np.isnan(cv["y"].iloc[-1]) and cv["y"].iloc[0] == 1e4
    assert f.evaluate(df, h=6)["n_points"] == 5


def test_float32_and_arithmetic_levels_are_the_levels_meant(tiny_checkpoint):
    df = monthly_frame(1)
    for levels in (np.array([0.1, 0.5, 0.9], dtype=np.float32), [0.1, 0.5, 0.7 + 0.2]):
        f = Forecaster(model=str(tiny_checkpoint), horizon=3, quantiles=levels)
        assert list(f.fit(df).predict().columns[-3:]) == ["0.1", "0.5", "0.9"]
        assert "coverage_10_90" in f.evaluate(df, h=3)


def test_save_and_load_round_trip(tiny_checkpoint, tmp_path):
    df = monthly_frame(2)
    f = Forecaster(model=str(tiny_checkpoint), horizon=5, quantiles=(0.1, 0.5, 0.9)).fit(df)
    f.save(tmp_path / "saved")
    g = Forecaster.load(tmp_path / "saved").fit(df)
    assert g.horizon == 5 and g.quantiles == (0.1, 0.5, 0.9)
    pd.testing.assert_frame_equal(f.predict(), g.predict())


def test_predict_on_other_series(tiny_checkpoint):
    f = Forecaster(model=str(tiny_checkpoint), horizon=3).fit(monthly_frame(1))
    other = monthly_frame(2, seed=5)
    fc = f.predict(df=other)
    assert sorted(fc.unique_id.unique()) == ["s0", "s1"] and len(fc) == 6


def test_gluonts_predictor(tiny_checkpoint):
    from tsfm.data.gluonts_adapters import to_list_dataset
    from tsfm.data.loading import load_series

    df = monthly_frame(2)
    f = Forecaster(model=str(tiny_checkpoint), horizon=4).fit(df)
    forecasts = list(f.to_gluonts_predictor().predict(to_list_dataset(load_series(df))))
    expected = f.predict()
    assert len(forecasts) == 2
    for fc, (_, rows) in zip(forecasts, expected.groupby("unique_id", sort=False)):
        np.testing.assert_allclose(fc.quantile(0.5), rows["0.5"].to_numpy(), rtol=1e-5)
        assert fc.start_date == pd.Period(rows.ds.iloc[0], freq="M")


def test_numeric_ids_come_back_as_given(tiny_checkpoint, tmp_path):
    df = monthly_frame(2, length=40)
    df["unique_id"] = df["unique_id"].map({u: k for k, u in enumerate(df["unique_id"].unique(), start=7)})
    f = Forecaster(model=str(tiny_checkpoint), horizon=3)
    out = f.fit(df).predict()
    assert out["unique_id"].dtype == np.int64 and out["unique_id"].unique().tolist() == [7, 8]
    assert len(out.merge(df.groupby("unique_id").tail(1), on="unique_id")) == 6  # merges with the input
    cv = f.cross_validation(df, n_windows=2)
    assert cv["unique_id"].dtype == np.int64
    floats = f.predict(df.assign(unique_id=df["unique_id"] + 0.5))
    assert floats["unique_id"].unique().tolist() == [7.5, 8.5]
    assert f.predict(df.assign(unique_id=df["unique_id"].astype(str)))["unique_id"].tolist()[0] == "7"
    f.save(tmp_path / "saved")
    assert Forecaster.load(tmp_path / "saved").predict()["unique_id"].dtype == np.int64


def test_gluonts_predictor_checks_and_scales_targets_as_fit_does(tiny_checkpoint):
    """Entries get fit's refusals (text, infinity, empty, too short) and its float64 magnitude
    scaling: 1e-40 x a series forecasts 1e-40 x its forecast, not the zeros of a float32 cast."""
    y = monthly_frame(1, length=60)["y"].to_numpy()
    fitted = Forecaster(model=str(tiny_checkpoint), horizon=4).fit(monthly_frame(1, length=60))
    predictor = fitted.to_gluonts_predictor()

    def median(target) -> np.ndarray:
        return next(predictor.predict([{"start": pd.Period("2010-01", "M"), "target": target}])).quantile(0.5)

    for factor in (1e-40, 1e40):
        np.testing.assert_allclose(median(y * factor), median(y) * factor, rtol=1e-5)
    for target, says in ((np.r_[y, np.inf], "infinite value"), ([np.nan] * 10, "no values"), ([], "no values"),
                         ([1.0, 2.0], "2 observed values, fewer than 3"), ([*y[:10], "x"], "must hold numbers")):
        with pytest.raises(InputError, match=says):
            median(target)


def test_gluonts_predictor_reads_each_entry_alone_at_its_own_frequency(tiny_checkpoint, tmp_path):
    """Windows of one series are forecast apart (pooled calibration must not see a later window's
    history); an entry's own period sets its dates; 2-D targets are refused; serialisation round-trips."""
    from gluonts.dataset.common import ListDataset
    from gluonts.model.predictor import Predictor

    y = monthly_frame(1, length=60)["y"].to_numpy()
    f = Forecaster(model=str(tiny_checkpoint), horizon=4, calibration_windows=2).fit(monthly_frame(1, length=60))
    predictor = f.to_gluonts_predictor()
    window = {"start": pd.Period("2010-01", "M"), "target": y[:40], "item_id": "s0"}
    later = {"start": pd.Period("2010-01", "M"), "target": y * np.r_[np.ones(40), np.full(20, 3.0)], "item_id": "s0"}
    alone = next(predictor.predict(ListDataset([window], freq="M")))
    together = list(predictor.predict(ListDataset([window, later], freq="M")))
    np.testing.assert_array_equal(together[0].forecast_array, alone.forecast_array)
    assert together[1].start_date == pd.Period("2015-01", "M")

    unnamed = [{"start": pd.Period("2010-01", "M"), "target": y[:40] * k} for k in (1, 2, 3)]
    named = [{**entry, "item_id": name} for entry, name in zip(unnamed, "abc")]
    without, by_name = (list(predictor.predict(ListDataset(d, freq="M"))) for d in (unnamed, named))
    assert [fc.item_id for fc in without] == ["0", "1", "2"]  # each its own series, forecast together
    for a, b in zip(without, by_name):
        np.testing.assert_array_equal(a.forecast_array, b.forecast_array)

    hourly = ListDataset([{"start": pd.Period("2021-01-01 00:00", "h"), "target": y, "item_id": "x"}], freq="h")
    assert next(predictor.predict(hourly)).start_date == pd.Period("2021-01-03 12:00", "h")
    for fiscal in ("Q-MAR", "Q-NOV", "Y-JUN"):  # labelled in the entry's own periods, where GluonTS looks
        start = pd.Period("2000-01-01", fiscal)
        entry = ListDataset([{"start": start, "target": y, "item_id": "f"}], freq=fiscal)
        assert next(predictor.predict(entry)).start_date == start + len(y)
    two_rows = ListDataset([{"start": pd.Period("2010-01", "M"), "target": np.stack([y, y])}], freq="M",
                           one_dim_target=False)
    with pytest.raises(InputError, match="univariate"):
        list(predictor.predict(two_rows))

    predictor.serialize(tmp_path)
    again = Predictor.deserialize(tmp_path)
    np.testing.assert_allclose(next(again.predict(ListDataset([window], freq="M"))).forecast_array,
                               alone.forecast_array, rtol=1e-6)


def test_cross_validation_backtests_the_frame_it_is_given(tiny_checkpoint):
    """A fitted Forecaster backtests new data as a fresh one would (statsforecast fits the frame it
    is given) and keeps its own fit; a series with no observed history before a cutoff is left out."""
    daily = monthly_frame(2, length=50).assign(ds=lambda d: d.groupby("unique_id").cumcount().map(
        lambda k: pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(k))))
    fresh = Forecaster(horizon=5).cross_validation(daily, n_windows=2)  # the suite: a daily variant
    fitted = Forecaster(horizon=5).fit(monthly_frame(1))  # ... and the monthly specialist
    pd.testing.assert_frame_equal(fitted.cross_validation(daily, n_windows=2), fresh)
    assert fitted.freq_ == "MS" and fitted.plan_.source == "ttm-96-monthly"

    blind = daily.copy()  # s1 (45 points) is observed from its 38th point: its older window sees nothing
    blind.loc[blind.index[blind.unique_id == "s1"][:37], "y"] = np.nan
    f = Forecaster(model=str(tiny_checkpoint), horizon=5)
    cv = f.cross_validation(blind, n_windows=2)
    assert cv.groupby("unique_id").cutoff.nunique().to_dict() == {"s0": 2, "s1": 1}
    assert f.cv_skipped_ == 1 and len(cv) == 3 * 5 and cv[cv.unique_id == "s1"].cutoff.iloc[0] == daily.ds[50 + 39]
    assert f.evaluate(blind, n_windows=2)["n_series_windows_skipped"] == 1
    with pytest.raises(InputError, match="n_windows must be a positive integer"):
        f.cross_validation(daily, n_windows=2.5)


def test_evaluate_scores_a_backtest(tiny_checkpoint):
    df = monthly_frame(2, length=60)
    f = Forecaster(model=str(tiny_checkpoint), horizon=6, quantiles=(0.1, 0.5, 0.9))
    scores = f.evaluate(df, h=6, n_windows=2)
    assert set(scores) >= {"MASE", "sMAPE", "WQL", "coverage_10_90"}
    assert scores["n_points"] == 2 * 2 * 6
    assert all(np.isfinite(scores[k]) and scores[k] >= 0 for k in ("MASE", "sMAPE", "WQL"))
    # the same numbers by hand from the cross-validation frame (sMAPE on the median)
    cv = f.cross_validation(df, h=6, n_windows=2)
    smape = 200 * np.mean(np.abs(cv.y - cv["0.5"]) / (np.abs(cv.y) + np.abs(cv["0.5"])))
    assert scores["sMAPE"] == pytest.approx(smape, rel=1e-9)


def test_predict_on_data_of_another_frequency_is_served_as_a_fit_on_it_would_be():
    """A monthly fit (the monthly specialist, 18 steps) forecasts daily data as a daily fit does
    (the daily model, 14 steps), through ``predict`` and the GluonTS predictor, and stays the monthly fit."""
    t = pd.date_range("2020-01-01", periods=300, freq="D")
    noise = np.random.default_rng(0).normal(size=300).cumsum()  # seasons alone forecast alike by any model
    daily = pd.DataFrame({"ds": t, "y": 40 + 5 * np.sin(np.arange(300) * 2 * np.pi / 7) + noise})
    fitted = Forecaster().fit(monthly_frame(1))
    pd.testing.assert_frame_equal(fitted.predict(daily), Forecaster().fit(daily).predict())
    assert fitted.model_name_ == "ttm-96-monthly" and len(fitted.predict()) == 18
    from gluonts.dataset.common import ListDataset  # the GluonTS predictor serves its entries so too

    entry = ListDataset([{"start": pd.Period("2020-01-01", "D"), "target": daily.y.to_numpy()}], freq="D")
    served = next(fitted.to_gluonts_predictor().predict(entry))
    np.testing.assert_allclose(served.quantile(0.5), Forecaster(horizon=18).fit(daily).predict()["0.5"], rtol=1e-6)
    assert fitted.model_name_ == "ttm-96-monthly"
