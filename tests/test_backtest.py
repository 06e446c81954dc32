"""tsfm.data.backtest: the one backtest splitter, on SeriesSets and (tsfm.evaluation) on frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsfm.data.backtest import backtest_windows
from tsfm.data.loading import load_series
from tsfm.errors import InputError
from tsfm.evaluation import backtest_forecasts, backtest_splits


def gappy_ragged_frame() -> pd.DataFrame:
    """Three daily series of different lengths; 'b' misses stamps inside and right before its end."""
    parts = []
    for uid, n, start, drop in (("a", 30, "2020-01-01", []), ("b", 41, "2020-01-05", [3, 17, 33, 36, 38]),
                                ("c", 23, "2020-02-01", [])):
        keep = np.setdiff1d(np.arange(n), drop)
        ds = pd.date_range(start, periods=n, freq="D")[keep]
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": keep + 100.0 * len(parts)}))
    return pd.concat(parts, ignore_index=True)


def split_last_windows(series, h, n_windows, step):
    """The windows SeriesSet.split_last gave Forecaster.cross_validation before the splitter existed."""
    out = []
    for k in range(n_windows - 1, -1, -1):
        held = h + k * step
        head = series.truncate(held)
        tails = [v[len(v) - held:] * series.scale_of(i) for i, v in enumerate(series.values)]
        out.append((head, [np.asarray(t)[:h] for t in tails]))
    return out


@pytest.mark.parametrize("h, n_windows, step", [(4, 3, None), (3, 4, 2), (5, 1, None)])
def test_backtest_windows_match_split_last_on_gappy_and_ragged_series(h, n_windows, step):
    series = load_series(gappy_ragged_frame())
    assert series.lengths.tolist() == [30, 41, 23] and series.n_gaps == [0, 5, 0]
    got = list(backtest_windows(series, h, n_windows, step))
    want = split_last_windows(series, h, n_windows, step or h)
    assert len(got) == len(want) == n_windows
    for (head, futures), (old_head, old_futures) in zip(got, want):
        assert head.lengths.tolist() == old_head.lengths.tolist()
        for a, b in zip(head.values, old_head.values):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(futures, old_futures):
            assert a.shape == (h, 1)
            np.testing.assert_array_equal(a, b)


def test_backtest_windows_oldest_first_and_too_short_series_named():
    series = load_series(gappy_ragged_frame())
    cutoffs = [head.last_timestamp(0) for head, _ in backtest_windows(series, 2, 3)]
    assert cutoffs == sorted(cutoffs) and cutoffs[-1] == series.timestamps(0)[-3]
    with pytest.raises(InputError, match="'c'"):
        next(backtest_windows(series, 8, 3))  # c has 23 points, 24 held out
    with pytest.raises(InputError, match="positive"):
        next(backtest_windows(series, 0))


@pytest.mark.parametrize("step", [None, 2])
def test_frame_splits_score_the_windows_of_the_series_splitter(step):
    """On a gappy frame the frame splitter cuts at the grid cutoffs; missing points are NaN rows."""
    df = gappy_ragged_frame()
    h, n_windows = 3, 4
    series = load_series(df)
    splits = backtest_splits(df.sample(frac=1.0, random_state=1), h, n_windows, step)
    for (context, actual), (head, futures) in zip(splits, backtest_windows(series, h, n_windows, step)):
        for i, uid in enumerate(series.ids):
            ctx, act = context[context.unique_id == uid], actual[actual.unique_id == uid]
            assert ctx.ds.max() == head.last_timestamp(i)  # the same cutoff
            assert pd.DatetimeIndex(act.ds).equals(head.future_index(i, h))  # the same scored stamps
            np.testing.assert_array_equal(act.y.to_numpy(), futures[i][:, 0])
            observed = ctx.dropna(subset=["y"])
            np.testing.assert_array_equal(observed.y.to_numpy(), head.values[i][~np.isnan(head.values[i][:, 0]), 0])


def test_frame_splits_unchanged_on_regular_ragged_series():
    """Without gaps the grid splitter cuts exactly the rows the row-counting splitter cut."""
    df = gappy_ragged_frame()
    df = df[df.unique_id != "b"].reset_index(drop=True)
    df["extra"] = np.arange(len(df))
    h, n_windows = 4, 3
    data = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    sizes = data.groupby("unique_id", sort=False)["ds"].transform("size").to_numpy()
    from_end = sizes - 1 - data.groupby("unique_id", sort=False).cumcount().to_numpy()
    for k, (context, actual) in enumerate(backtest_splits(df, h, n_windows)):
        start = (n_windows - k) * h
        pd.testing.assert_frame_equal(context, data[from_end >= start].reset_index(drop=True))
        pd.testing.assert_frame_equal(actual, data[(from_end < start) & (from_end >= start - h)].reset_index(drop=True))


def test_backtest_forecasts_on_a_gappy_frame_forecast_the_grid_after_each_cutoff():
    df = gappy_ragged_frame()

    def last_value(context: pd.DataFrame) -> pd.DataFrame:  # a forecaster that reads the context's grid
        s = load_series(context)
        rows = [pd.DataFrame({"unique_id": uid, "ds": s.future_index(i, 2), "0.5": np.nanmax(s.values[i])})
                for i, uid in enumerate(s.ids)]
        return pd.concat(rows, ignore_index=True)

    cv = backtest_forecasts(last_value, df, h=2, n_windows=3)
    series = load_series(df)
    want = [head.last_timestamp(1) for head, _ in backtest_windows(series, 2, 3)]
    assert sorted(cv[cv.unique_id == "b"].cutoff.unique()) == want
    assert cv[cv.unique_id == "b"].y.isna().sum() == 2  # the missing stamps 36 and 38 are scored as gaps
