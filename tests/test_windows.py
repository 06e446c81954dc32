"""tsfm.data.windows: context windows (padding, masks, truncation), covariates, known-future frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsfm.data.loading import load_series
from tsfm.data.series_set import SeriesSet
from tsfm.data.windows import future_exog_windows, inference_windows
from tsfm.errors import InputError


def make_set(lengths=(3, 6), channels=1, freq="D") -> SeriesSet:
    values = [np.arange(t * channels, dtype=np.float32).reshape(t, channels) + 100 * i for i, t in enumerate(lengths)]
    return SeriesSet(
        ids=[f"s{i}" for i in range(len(lengths))],
        freq=freq,
        starts=[pd.Timestamp("2024-01-01")] * len(lengths),
        values=values,
        target_names=[f"c{k}" for k in range(channels)],
    )


def test_short_series_are_left_padded_and_masked():
    w = inference_windows(make_set((3, 6)), context_length=5)
    pv, pm = w["past_values"], w["past_mask"]
    assert pv.shape == pm.shape == (2, 5, 1) and pv.dtype == pm.dtype == np.float32
    np.testing.assert_array_equal(pv[0, :, 0], [np.nan, np.nan, 0, 1, 2])
    np.testing.assert_array_equal(pm[0, :, 0], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(pv[1, :, 0], [101, 102, 103, 104, 105])  # truncated to the last 5
    np.testing.assert_array_equal(pm[1, :, 0], [1, 1, 1, 1, 1])


def test_missing_values_are_masked_and_channels_kept_apart():
    s = make_set((4,), channels=2)
    s.values[0][1, 1] = np.nan
    w = inference_windows(s, context_length=4)
    np.testing.assert_array_equal(w["past_values"][0, :, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(w["past_mask"][0, :, 1], [1, 0, 1, 1])
    assert np.isnan(w["past_values"][0, 1, 1])


def test_exact_length_and_freq_token():
    s = make_set((4,), freq="MS")
    w = inference_windows(s, context_length=4)
    assert w["past_mask"].all() and w["freq_id"].tolist() == [s.freq_info.token] and w["freq_id"][0] > 0
    assert "past_exog" not in w and "future_exog" not in w


def test_past_exog_windows_are_finite_and_ordered():
    s = make_set((4, 2))
    s.past_exog = [np.array([[1.0], [np.nan], [3.0], [4.0]], np.float32), np.array([[np.nan], [np.nan]], np.float32)]
    s.future_exog = [np.array([[10.0], [11.0], [12.0], [13.0]], np.float32), np.array([[20.0], [21.0]], np.float32)]
    s.past_exog_names, s.future_exog_names = ["p"], ["f"]
    w = inference_windows(s, context_length=5)
    assert w["past_exog"].shape == (2, 5, 2) and w["past_exog_names"] == ["p", "f"]
    np.testing.assert_array_equal(w["past_exog"][0, :, 0], [1, 1, 1, 3, 4])  # pad/gap: nearest observed value
    np.testing.assert_array_equal(w["past_exog"][0, :, 1], [10, 10, 11, 12, 13])
    np.testing.assert_array_equal(w["past_exog"][1, :, 0], [0, 0, 0, 0, 0])  # never observed -> 0
    np.testing.assert_array_equal(w["past_exog"][1, :, 1], [20, 20, 20, 20, 21])


def frame_with_promo(n=8):
    ds = pd.date_range("2023-01-02", periods=n, freq="B")
    df = pd.concat([pd.DataFrame({"unique_id": uid, "ds": ds, "y": np.arange(n, dtype=float) + k,
                                  "promo": (np.arange(n) + k) % 2.0}) for k, uid in enumerate(("a", "b"))])
    return load_series(df, future_exog=["promo"])


def future_frame(series: SeriesSet, h: int) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"unique_id": uid, "ds": series.future_index(i, h),
                                    "promo": 10.0 * (i + 1) + np.arange(h)})
                      for i, uid in enumerate(series.ids)], ignore_index=True)


def test_future_exog_from_a_frame_in_any_row_order():
    s = frame_with_promo()
    fut = future_frame(s, 3).sample(frac=1.0, random_state=1)
    x = future_exog_windows(s, fut, 3)
    assert x.shape == (2, 3, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :, 0], [[10, 11, 12], [20, 21, 22]])
    assert s.future_index(0, 3)[0] == pd.Timestamp("2023-01-12")  # business days skip the weekend
    w = inference_windows(s, 6, future=fut, h=3)
    np.testing.assert_array_equal(w["future_exog"], x)
    assert w["future_exog_names"] == ["promo"] and w["past_exog"].shape == (2, 6, 1)


def test_future_exog_shared_frame_without_ids_is_broadcast():
    s = frame_with_promo()
    fut = pd.DataFrame({"ds": s.future_index(0, 2), "promo": [5.0, 6.0]})
    np.testing.assert_array_equal(future_exog_windows(s, fut, 2)[:, :, 0], [[5, 6], [5, 6]])


def test_future_exog_rows_outside_the_horizon_are_ignored():
    s = frame_with_promo()
    fut = future_frame(s, 3)
    extra = pd.DataFrame({"unique_id": ["b", "a"], "ds": pd.to_datetime(["2023-01-17", "2023-01-02"]), "promo": 0.0})
    np.testing.assert_array_equal(future_exog_windows(s, pd.concat([extra, fut]), 3), future_exog_windows(s, fut, 3))


@pytest.mark.parametrize("breakage", ["missing_row", "wrong_stamp", "unknown_id", "nan", "no_column"])
def test_future_exog_errors_name_ids_and_expected_stamps(breakage):
    s = frame_with_promo()
    fut = future_frame(s, 3)
    if breakage == "missing_row":
        fut = fut.drop(index=4)
    elif breakage == "wrong_stamp":
        fut.loc[0, "ds"] = pd.Timestamp("2023-01-14")  # a Saturday
    elif breakage == "unknown_id":
        fut.loc[0, "unique_id"] = "zz"
    elif breakage == "nan":
        fut.loc[2, "promo"] = np.nan
    else:
        fut = fut.drop(columns="promo")
    with pytest.raises(InputError) as info:
        future_exog_windows(s, fut, 3)
    msg = str(info.value)
    assert "\n" not in msg
    expected_words = {
        "missing_row": "'b' needs a row at each of its 3 steps 2023-01-12 00:00:00 .. 2023-01-16 00:00:00",
        "wrong_stamp": "'a' needs a row at each of its 3 steps",
        "unknown_id": "zz",
        "nan": "missing for 'a'",
        "no_column": "lacks promo",
    }
    assert expected_words[breakage] in msg


def test_future_exog_requires_named_columns():
    s = make_set((4,))
    with pytest.raises(InputError, match="no future_exog columns"):
        future_exog_windows(s, pd.DataFrame({"ds": s.future_index(0, 1), "x": [1.0]}), 1)


def test_windows_for_1000_series_of_mixed_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(200, 800, size=1000)
    s = make_set(tuple(int(t) for t in lengths))
    w = inference_windows(s, context_length=512)
    i = int(np.argmin(lengths))
    pad = 512 - int(lengths[i])
    assert w["past_mask"][i, :pad].sum() == 0 and w["past_values"][i, pad, 0] == s.values[i][0, 0]
    j = int(np.argmax(lengths))
    np.testing.assert_array_equal(w["past_values"][j, :, 0], s.values[j][-512:, 0])


def test_load_series_of_1000_series():
    """1,000 series x 512 points from a frame (speed is measured in benchmarks/speed.py, not here)."""
    n, t = 1000, 512
    ds = pd.date_range("2000-01-01", periods=t, freq="h")
    df = pd.DataFrame({"unique_id": np.repeat([f"s{i}" for i in range(n)], t), "ds": np.tile(ds, n),
                       "y": np.random.default_rng(0).normal(size=n * t)})
    s = load_series(df)
    assert len(s) == n and s.lengths.tolist() == [t] * n and s.freq == "h"
    np.testing.assert_allclose(s.values[7][:, 0], df.y.to_numpy()[7 * t : 8 * t].astype(np.float32))
