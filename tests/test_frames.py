"""Loading user tables (tsfm.data.loading and its parts), frequency inference, forecast frames; GluonTS round trip."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tsfm.data.backtest import backtest_windows
from tsfm.data.forecast_frame import forecast_frame
from tsfm.data.freq import canonical_alias, same_freq
from tsfm.data.gluonts_adapters import from_gluonts, period_freq, to_gluonts, to_list_dataset
from tsfm.data.loading import load_series
from tsfm.data.series_set import SeriesSet
from tsfm.data.tables import read_header, read_table
from tsfm.errors import InputError
from tsfm_runtime.freq import NON_SEASONAL, infer_resolution, resolution_name, season_of

REPO = Path(__file__).resolve().parents[1]


def _eval_dir() -> Path | None:
    candidates = [os.environ.get("TSFM_EVAL_DIR"), REPO.parent / "shared" / "data" / "eval", "/work/shared/data/eval"]
    for c in candidates:
        if c and (Path(c) / "manifest.json").is_file():
            return Path(c)
    return None


EVAL = _eval_dir()
TASKS = json.loads((EVAL / "manifest.json").read_text())["tasks"] if EVAL else []


def long_frame(ids=("a", "b"), n=24, freq="MS", start="2020-01-01", seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k, uid in enumerate(ids):
        ds = pd.date_range(start, periods=n + k, freq=freq)
        parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.normal(10 * (k + 1), 1, len(ds))}))
    return pd.concat(parts, ignore_index=True)


def one_line_error(data, **kw) -> str:
    with pytest.raises(InputError) as info:
        load_series(data, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg
    return msg


# ------------------------------------------------------------------ eval set


@pytest.mark.skipif(EVAL is None, reason="eval data folder (../shared/data/eval) not present")
@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_eval_files_load_with_manifest_frequency_and_shape(task):
    s = load_series(EVAL / task["file"])
    assert same_freq(s.freq, task["freq"]), (s.freq, task["freq"])
    assert len(s) == task["n_series"]
    assert s.lengths.min() == task["min_length"] and s.lengths.max() == task["max_length"]
    assert int(s.lengths.sum()) == task["n_points"]
    raw = pd.read_csv(EVAL / task["file"])
    first = raw[raw.unique_id.astype(str) == s.ids[0]]
    np.testing.assert_allclose(s.values[0][:, 0], first.y.to_numpy(np.float32))
    assert s.starts[0] == pd.Timestamp(first.ds.iloc[0]) and s.n_gaps == [0] * len(s)


# ------------------------------------------------------------------ layouts


def test_long_and_wide_give_identical_series():
    long = long_frame(ids=("a", "b"), n=30)
    long = long[~((long.unique_id == "b") & (long.ds == "2020-05-01"))]  # a gap in b
    wide = long.pivot(index="ds", columns="unique_id", values="y").reset_index()
    wide.columns.name = None
    a, b = load_series(long), load_series(wide)
    assert (a.layout, b.layout) == ("long", "wide")
    assert a.ids == b.ids == ["a", "b"] and a.freq == b.freq == "MS" and a.starts == b.starts
    for x, y in zip(a.values, b.values):
        np.testing.assert_array_equal(x, y)
    assert np.isnan(b.values[1][4, 0]) and b.n_gaps == [0, 1]


def test_wide_series_with_different_spans_are_trimmed_to_their_values():
    wide = pd.DataFrame({"ds": pd.date_range("2021-01-04", periods=6, freq="D"),
                         "x": [1, 2, 3, 4, 5, 6], "z": [np.nan, np.nan, 3, 4, 5, np.nan]})
    s = load_series(wide)
    assert s.lengths.tolist() == [6, 3] and s.starts[1] == pd.Timestamp("2021-01-06")
    np.testing.assert_array_equal(s.values[1][:, 0], [3, 4, 5])


def test_aliases_item_id_timestamp_target_and_ids_keep_string_form(tmp_path):
    df = pd.DataFrame({"item_id": ["007"] * 4 + ["12"] * 4,
                       "timestamp": list(pd.date_range("2020-01-01", periods=4, freq="h")) * 2,
                       "target": np.arange(8.0), "other": 1.0})
    path = tmp_path / "x.csv"
    df.to_csv(path, index=False)
    s = load_series(path)
    assert s.ids == ["007", "12"] and s.freq == "h" and s.target_names == ["target"]
    np.testing.assert_array_equal(s.values[1][:, 0], [4, 5, 6, 7])


def test_flags_override_detection_and_several_targets_become_channels():
    df = pd.DataFrame({"store": ["s1"] * 5 + ["s2"] * 5, "when": list(pd.date_range("2020-01-06", periods=5)) * 2,
                       "sales": np.arange(10.0), "visits": np.arange(10.0) * 2, "promo": [0, 1] * 5})
    s = load_series(df, id_col="store", time_col="when", target=["sales", "visits"], future_exog=["promo"])
    assert s.ids == ["s1", "s2"] and s.target_names == ["sales", "visits"] and s.values[0].shape == (5, 2)
    assert s.future_exog_names == ["promo"] and s.future_exog[1][:, 0].tolist() == [1, 0, 1, 0, 1]
    assert s.past_exog is None


def test_sorted_within_id_and_first_appearance_order():
    df = long_frame(ids=("zeta", "alpha"), n=6).sample(frac=1.0, random_state=3)
    first = df.unique_id.iloc[0]
    s = load_series(df)
    assert s.ids[0] == first
    ref = long_frame(ids=("zeta", "alpha"), n=6)
    for uid, v in zip(s.ids, s.values):
        np.testing.assert_allclose(v[:, 0], ref[ref.unique_id == uid].y.to_numpy(np.float32))


def test_multivariate_wide_and_long_make_one_item_with_channels():
    long = long_frame(ids=("a", "b", "c"), n=12)
    wide = long.pivot(index="ds", columns="unique_id", values="y").reset_index()
    for data in (long, wide):
        s = load_series(data, multivariate=True)
        assert len(s) == 1 and s.ids_as_channels and s.target_names == ["a", "b", "c"]
        assert s.values[0].shape == (14, 3)
        assert np.isnan(s.values[0][12:, 0]).all() and not np.isnan(s.values[0][:, 2]).any()
        fc = forecast_frame(s, np.zeros((1, 2, 3, 1)), [0.5])
        assert fc.unique_id.tolist() == ["a", "a", "b", "b", "c", "c"] and "target" not in fc


def test_extra_columns_ignored_unless_named_and_constant_series_accepted():
    df = long_frame(n=8)
    df["y"] = 5.0
    df["note"] = "text"
    s = load_series(df)
    assert s.past_exog is None and np.all(s.values[0] == 5.0)


def test_dataframe_with_datetime_index_reads_as_wide():
    idx = pd.date_range("2000-01-01", periods=10, freq="QS-OCT")
    s = load_series(pd.DataFrame({"gdp": np.arange(10.0)}, index=idx))
    assert s.ids == ["gdp"] and s.freq == "QS" and s.starts[0] == idx[0]


# ------------------------------------------------------------------ frequency inference


@pytest.mark.parametrize(
    "freq, expected, drop",
    [
        ("MS", "MS", [3, 4, 9]),
        ("ME", "ME", [2]),
        ("QS-OCT", "QS", [5]),
        ("QE-DEC", "QE", [1, 7]),
        ("YS", "YS", [2, 3]),
        ("YS-APR", "YS-APR", [4]),
        ("W-SAT", "W-SAT", [2, 10]),
        ("W-SUN", "W", [6]),
        ("B", "B", [3, 4, 11]),
        ("D", "D", [5]),
        ("30min", "30min", [1, 2, 30]),
        ("h", "h", [7]),
        ("15min", "15min", [4]),
    ],
)
def test_frequency_inferred_despite_gaps(freq, expected, drop):
    ds = pd.date_range("2001-04-01", periods=40, freq=freq)
    keep = np.setdiff1d(np.arange(40), drop)
    df = pd.DataFrame({"unique_id": "s", "ds": ds[keep], "y": keep.astype(float)})
    s = load_series(df)
    assert s.freq == expected
    assert s.timestamps(0).equals(ds)  # same grid as the alias it came from (QS-OCT is QS)
    assert len(s.values[0]) == 40 and s.n_gaps == [len(drop)]
    assert np.isnan(s.values[0][drop, 0]).all()
    np.testing.assert_array_equal(s.values[0][keep, 0], keep)


@pytest.mark.parametrize("freq, expected", [("BMS", "BMS"), ("6MS", "6MS"), ("2W-MON", "2W-MON"), ("2D", "2D"),
                                            ("QE-NOV", "QE-NOV")])
def test_less_common_regular_frequencies(freq, expected):
    ds = pd.date_range("2021-03-01", periods=30, freq=freq)
    s = load_series(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 1.0}))
    assert s.freq == expected and s.timestamps(0).equals(ds)


def test_monthly_stamps_on_a_fixed_day_get_a_specific_hint():
    ds = pd.date_range("2020-01-01", periods=12, freq="MS") + pd.Timedelta(days=14)
    msg = one_line_error(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 1.0}))
    assert "monthly stamps on day 15" in msg and "month starts" in msg


def test_short_series_borrow_the_frequency_of_the_others():
    df = pd.concat([long_frame(ids=("long",), n=10, freq="W-SAT"),
                    pd.DataFrame({"unique_id": "short", "ds": pd.to_datetime(["2020-01-04", "2020-01-18"]), "y": 1.0})])
    s = load_series(df, min_length=2)
    assert s.freq == "W-SAT" and s.lengths.tolist() == [10, 3] and np.isnan(s.values[1][1, 0])


def test_given_freq_is_used_and_checked():
    df = long_frame(n=6, freq="MS")
    assert load_series(df, freq="MS").freq == "MS"
    assert "--freq D leaves 96% of the grid empty" in one_line_error(df, freq="D")  # finer than the data: refused
    msg = one_line_error(df, freq="ME")
    assert "not on the ME grid" in msg and "--freq MS" in msg
    assert "unknown frequency" in one_line_error(df, freq="fortnightly")


def test_canonical_alias_folds_equivalent_anchors():
    assert canonical_alias("QS-OCT") == "QS" and canonical_alias("QS-MAY") == "QS-FEB"
    assert canonical_alias("QE-SEP") == "QE" and canonical_alias("W-SUN") == "W" and canonical_alias("YS-JAN") == "YS"


def test_timezone_aware_stamps_are_compared_in_utc():
    ds = pd.date_range("2021-03-27", periods=72, freq="h", tz="Europe/London")
    s = load_series(pd.DataFrame({"unique_id": "x", "ds": ds.astype(str), "y": np.arange(72.0)}))
    assert s.freq == "h" and len(s.values[0]) == 72
    # hourly text with two UTC offsets: the grid is in UTC, and the zone itself is unknown, so stamps come back in UTC
    assert s.starts[0] == pd.Timestamp("2021-03-27 00:00") and str(s.timestamps(0).tz) == "UTC"
    assert s.timestamps(0).equals(ds.tz_convert("UTC"))


def test_business_month_quarter_and_year_stamps_keep_their_resolution():
    """Month-end closing prices sit on the last business day: still monthly data (season 12, the
    monthly horizon and models); semi-monthly data has no resolution of its own."""
    assert [resolution_name(a) for a in ("BME", "BMS", "CBME", "BQE-DEC", "BQS-OCT", "BYE", "BA", "SMS")] == \
        ["M", "M", "M", "Q", "Q", "Y", "Y", ""]
    ds = pd.date_range("2001-01-01", periods=40, freq="BQS")
    s = load_series(pd.DataFrame({"ds": ds, "y": np.arange(40.0)}))
    assert s.freq.startswith("BQS") and (s.freq_info.season, s.stated_freq_info.horizon) == (4, 8)


def test_multiples_without_a_resolution_keep_the_base_cycle_in_fewer_steps():
    """6-hourly data repeats daily every 4 steps (GluonTS' seasonality too); 7-hourly has no cycle."""
    assert [season_of(a) for a in ("2h", "6h", "12h", "7h", "2MS", "2QS", "2D", "h", "QS-OCT", "2ms")] == \
        [12, 4, 2, 1, 6, 2, 1, 24, 4, 1]
    ds = pd.date_range("2001-01-01", periods=200, freq="6h")
    s = load_series(pd.DataFrame({"ds": ds, "y": np.arange(200.0)}))
    assert (s.freq_info.season, s.freq_info.token, s.stated_freq_info.horizon) == (4, 0, 14)


def test_decimal_years_of_months_and_quarters_parse_as_dates():
    """R's time() of a monthly ts, written with three decimals, and of a quarterly one."""
    months = load_series(pd.DataFrame({"t": np.round(1949 + np.arange(30) / 12, 3), "v": np.arange(30.0)}),
                         time_col="t")
    assert months.freq == "MS" and months.starts[0] == pd.Timestamp("1949-01-01")
    assert months.timestamps(0)[-1] == pd.Timestamp("1951-06-01")
    quarters = load_series(pd.DataFrame({"t": 1990.5 + np.arange(12) / 4, "v": np.arange(12.0)}), time_col="t")
    assert quarters.freq.startswith("QS") and quarters.starts[0] == pd.Timestamp("1990-07-01")
    with pytest.raises(InputError, match="decimal years of months or quarters"):
        load_series(pd.DataFrame({"t": 1990 + np.arange(60) / 52, "v": np.arange(60.0)}), time_col="t")


@pytest.mark.parametrize("fmt", ["%d.%m.%Y", "%d-%m-%Y", "%d.%m.%Y %H:%M"])
def test_dotted_and_dashed_day_first_dates_are_read_day_first_on_every_row(fmt):
    """Dots are always day-first (a year of month starts 01.01.2023 ... 01.12.2023 too); dashes as slashes."""
    days = pd.date_range("2020-01-01", periods=60, freq="D")
    assert load_series(pd.DataFrame({"ds": days.strftime(fmt), "y": np.arange(60.0)})).timestamps(0).equals(
        pd.DatetimeIndex(days))
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    if "." in fmt:
        s = load_series(pd.DataFrame({"ds": months.strftime(fmt), "y": np.arange(12.0)}))
        assert s.freq == "MS" and s.timestamps(0).equals(pd.DatetimeIndex(months))


def test_a_freq_finer_than_the_data_is_refused_where_the_data_have_a_resolution():
    months = pd.DataFrame({"ds": pd.date_range("2000-01-01", periods=40, freq="MS"), "y": np.arange(40.0)})
    with pytest.raises(InputError, match="--freq D leaves 97% of the grid empty: the data look like MS"):
        load_series(months, freq="D")
    every_third_day = pd.DataFrame({"ds": pd.date_range("2020-01-01", periods=90)[::3], "y": np.arange(30.0)})
    assert load_series(every_third_day, freq="D").n_gaps == [58]  # no resolution of their own: placed as asked


def test_integers_that_are_all_compact_dates_are_dates_and_other_integers_steps():
    days = pd.date_range("2023-01-25", periods=40, freq="D")
    daily = load_series(pd.DataFrame({"ds": days.strftime("%Y%m%d").astype(int), "y": np.arange(40.0)}))
    assert (daily.freq, daily.step_index, daily.starts[0]) == ("D", False, pd.Timestamp("2023-01-25"))
    months = pd.date_range("2019-06-01", periods=30, freq="MS")
    monthly = load_series(pd.DataFrame({"ds": months.strftime("%Y%m").astype(int), "y": np.arange(30.0)}))
    assert monthly.freq == "MS" and monthly.timestamps(0)[-1] == 202111  # given back as written
    assert daily.future_index(0, 2).tolist() == [20230306, 20230307]
    years = load_series(pd.DataFrame({"ds": np.arange(1990, 2020), "y": np.arange(30.0)}))
    assert years.freq == "YS" and years.future_index(0, 2).tolist() == [2020, 2021]
    steps = load_series(pd.DataFrame({"ds": np.arange(200001, 200101), "y": np.arange(100.0)}))  # 200013 is no month
    assert steps.step_index and len(steps.values[0]) == 100
    weeks = load_series(pd.DataFrame({"ds": np.arange(202401, 202411), "y": np.arange(10.0)}))  # no year crossed
    assert weeks.step_index and weeks.future_index(0, 3).tolist() == [202411, 202412, 202413]


def test_future_covariates_are_matched_to_integer_times_as_written():
    from tsfm.data.windows import future_exog_windows

    days = pd.date_range("2023-01-25", periods=40).strftime("%Y%m%d").astype(int)
    cases = ((np.arange(1990, 2020), [2020, 2021]), (days, [20230306, 20230307]), (np.arange(1, 41), [41, 42]))
    for ds, ahead in cases:
        history = pd.DataFrame({"unique_id": "y", "ds": ds, "y": np.arange(len(ds), dtype=float), "promo": 0.0})
        s = load_series(history, future_exog=["promo"])
        future = pd.DataFrame({"unique_id": "y", "ds": ahead, "promo": [1.0, 0.0]})
        assert future_exog_windows(s, future, 2).ravel().tolist() == [1.0, 0.0]
        assert future_exog_windows(s, future.drop(columns="unique_id"), 2).ravel().tolist() == [1.0, 0.0]


def test_a_range_index_numbers_steps_whatever_its_numbers_and_a_slice_keeps_them():
    y = pd.Series(np.sin(np.arange(2000.0)))
    for sliced in (y.iloc[1700:2000], y.to_frame("v").iloc[1700:2000]):  # not the years 1700-1999
        steps = load_series(sliced)
        assert steps.step_index and steps.timestamps(0)[[0, -1]].tolist() == [1700, 1999]
        assert np.array_equal(steps.values[0][:, 0], y.to_numpy(np.float32)[1700:])
    years = load_series(pd.Series(y.to_numpy()[:30], index=pd.Index(np.arange(1950, 1980))))  # set as years
    assert not years.step_index and years.freq == "YS"


def test_series_periods_and_plain_values_are_read_as_users_of_pandas_and_sktime_hold_them():
    y = np.arange(30.0)
    monthly = load_series(pd.Series(y, index=pd.period_range("2000-01", periods=30, freq="M"), name="sales"))
    assert (monthly.ids, monthly.freq, monthly.starts[0]) == (["sales"], "MS", pd.Timestamp("2000-01-01"))
    quarterly = load_series(pd.DataFrame({"a": y, "b": y}, index=pd.period_range("1990Q3", periods=30, freq="Q")))
    assert quarterly.ids == ["a", "b"] and quarterly.freq.startswith("QS") and quarterly.starts[0].month == 7
    panel = pd.DataFrame({"y": np.r_[y, y]}, index=pd.MultiIndex.from_product(
        [["a", "b"], pd.period_range("1950", periods=30, freq="Y")], names=["unique_id", "ds"]))
    assert load_series(panel).freq == "YS"
    demand = load_series(pd.DataFrame({"demand": np.tile([0, 3, 1, 0, 2], 6)}))  # a lone column is the series
    assert demand.ids == ["demand"] and demand.step_index
    ramp = load_series(pd.DataFrame({"sales": np.arange(1.0, 7.0)}))  # even a ramp, which could be a time elsewhere
    assert ramp.ids == ["sales"] and ramp.values[0][:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    for values in (pd.Series(y), y, list(y)):  # values alone: one series of integer steps
        steps = load_series(values)
        assert steps.step_index and len(steps) == 1 and steps.values[0][:, 0].tolist() == y.tolist()
    table = load_series(pd.DataFrame({"a": np.sin(y), "b": np.cos(y)}))  # numbers alone: each row the next step
    assert table.ids == ["a", "b"] and table.step_index and np.allclose(table.values[1][:, 0], np.cos(y))
    gappy = pd.DataFrame({"a": np.sin(y), "b": np.cos(y)}).astype(float)
    gappy.iloc[10] = np.nan  # an empty row is a missing step, not a shorter table
    assert load_series(gappy).n_gaps == [1, 1] and load_series(pd.Series(np.sin(y)).drop(index=10)).n_gaps == [1]
    assert load_series(pd.Series(y, name="ds")).ids == ["y"]
    times = {"named like a time": pd.DataFrame({"year": np.repeat(np.arange(2000, 2005), 6), "month": np.tile(
        np.arange(1, 7), 5), "v": np.sin(y)}), "an unnamed count": pd.DataFrame({"c": np.arange(30, 0, -1), "v": y}),
        "codes": pd.DataFrame({"store": np.repeat([3, 7], 15), "v": np.sin(y)}),
        "decimal years": pd.DataFrame({"when": 1949 + np.arange(30) / 12, "v": np.sin(y)})}
    for what, table in times.items():  # a column that may be a time or a code: the user says which
        with pytest.raises(InputError, match="cannot tell long from wide"):
            load_series(table)
        named = load_series(table, target=list(table.columns))  # every column named a target: rows are steps
        assert named.ids == list(table.columns) and named.step_index, what
    assert load_series([np.array(v) for v in y]).ids == ["y"]  # 0-d arrays are numbers, not series
    several = load_series([np.sin(y), list(np.cos(y[:20]))])  # Chronos' input: one array per series
    assert several.ids == ["0", "1"] and several.lengths.tolist() == [30, 20] and several.step_index
    tensors = load_series([torch.tensor(np.sin(y)), torch.tensor(y[:20])])  # Chronos' own input: tensors
    assert tensors.lengths.tolist() == [30, 20] and np.allclose(tensors.values[1][:, 0], y[:20])
    assert load_series(torch.tensor(y)).lengths.tolist() == [30]
    months = pd.date_range("2015-01-01", periods=30, freq="MS")
    dated = load_series([pd.Series(y, index=months, name="a"), pd.Series(y[:20], index=months[:20], name="b")])
    assert dated.ids == ["a", "b"] and dated.freq == "MS" and dated.timestamps(1)[-1] == months[19]
    with pytest.raises(InputError, match="mixes pandas Series indexed by times with arrays"):
        load_series([pd.Series(y, index=months), y])
    with pytest.raises(InputError, match="pass a 1-D array"):
        load_series(np.ones((3, 4)))
    with pytest.raises(InputError, match="must hold numbers"):
        load_series(["a", "b", "c"])


def test_period_notations_parse_as_each_period_start():
    """R's tsibble prints quarters and weeks as 2000 Q1 and 2000 W05, statistical offices write
    2000M01, pandas writes a weekly period as its date range."""
    y = np.arange(12.0)
    expected = {
        "QS": ([f"{2000 + i // 4} Q{i % 4 + 1}" for i in range(12)], "2000-01-01"),
        "MS": ([f"{2000 + i // 12}M{i % 12 + 1:02d}" for i in range(12)], "2000-01-01"),
        "W-MON": ([f"2000-W{i + 1:02d}" for i in range(12)], "2000-01-03"),  # ISO week 1 starts Monday 3 January
    }
    for freq, (stamps, start) in expected.items():
        s = load_series(pd.DataFrame({"ds": stamps, "y": y}))
        assert s.freq.startswith(freq[:2]) and s.starts[0] == pd.Timestamp(start)
    for n in (3, 12):  # pandas alone reads a few 2000-01-03/2000-01-09 as times of day
        weeks = pd.period_range("2000-01-03", periods=n, freq="W").astype(str)
        assert load_series(pd.DataFrame({"ds": weeks, "y": y[:n]})).starts[0] == pd.Timestamp("2000-01-03")
    beer = load_series(pd.DataFrame({"Quarter": expected["QS"][0], "Beer": y}))  # tsibble's column name
    assert beer.ids == ["Beer"] and beer.freq.startswith("QS")
    bad = one_line_error(pd.DataFrame({"Month": [f"2000M{i + 1:02d}" for i in range(13)], "y": np.arange(13.0)}))
    assert bad.startswith("period '2000M13' in column 'Month' at row 12 does not exist")


def test_integer_years_parse_as_yearly():
    s = load_series(pd.DataFrame({"year": np.arange(1990, 2000), "v": np.arange(10.0)}), time_col="year")
    assert s.freq == "YS" and s.starts[0] == pd.Timestamp("1990-01-01")


def seasonal_steps(period: float, n_series: int = 3, length: int = 120, seed: int = 0,
                   noise: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [50 + 0.2 * t + 4 * np.sin(2 * np.pi * t / period + rng.uniform(0, 6)) + rng.normal(0, noise, length)
            for _ in range(n_series)]


def test_the_resolution_of_integer_steps_is_read_from_their_seasons():
    assert infer_resolution(seasonal_steps(12)) == "MS"
    assert infer_resolution(seasonal_steps(4, length=40)) == "QS"
    assert infer_resolution(seasonal_steps(24, length=400)) == "h"
    assert infer_resolution(seasonal_steps(365.25 / 7, length=400, noise=0.2)) == "W"  # not a whole number of weeks
    # a long smooth season under noise: its differences are mostly noise, its levels show it
    assert infer_resolution(seasonal_steps(96, n_series=1, length=800, noise=0.5)) == "15min"
    assert infer_resolution(seasonal_steps(24, n_series=1, length=100, noise=0.5)) == "h"
    # a harmonic is not a season: a monthly season also peaks at 24 steps, tested on the few long series
    assert infer_resolution(seasonal_steps(12, n_series=4, length=40) + seasonal_steps(12, 2, length=200, seed=1)) \
        == "MS"
    rng = np.random.default_rng(7)
    t = np.arange(1000)
    assert infer_resolution([np.r_[np.zeros(500), np.ones(500)] + rng.normal(0, 1, 1000)]) == NON_SEASONAL  # a shift
    assert infer_resolution([np.exp(0.01 * t[:300]) * (1 + rng.normal(0, 0.02, 300))]) == NON_SEASONAL  # growth
    walks = [np.cumsum(np.random.default_rng(i).normal(1, 1, 80)) for i in range(5)]
    assert infer_resolution(walks) == infer_resolution([]) == NON_SEASONAL  # trends and noise are no season
    gappy = seasonal_steps(12)
    gappy[0][[5, 6, 40]] = np.nan
    assert infer_resolution(gappy) == "MS"
    # of a large dataset, a spread of the series long enough to read
    assert infer_resolution([np.ones(8) if i % 2 else y for i, y in enumerate(seasonal_steps(12, 1000, 48))]) == "MS"


def test_integer_steps_without_freq_get_the_inferred_resolution_but_their_own_horizon():
    rows = [pd.DataFrame({"unique_id": f"s{i}", "t": np.arange(1, 121), "y": y})
            for i, y in enumerate(seasonal_steps(12))]
    steps = load_series(pd.concat(rows), time_col="t")
    assert steps.step_index and steps.inferred == "MS" and steps.resolution is None
    assert steps.freq_info.season == 12 and steps.stated_freq_info.horizon == 14  # the horizon stays the steps' default
    told = load_series(pd.concat(rows), time_col="t", freq="QS")
    assert told.inferred is None and told.freq_info.season == 4 and told.stated_freq_info.horizon == 8
    fives = load_series(pd.DataFrame({"t": np.arange(0, 60, 5), "y": np.arange(12.0)}), time_col="t", freq="D")
    assert fives.resolution == "D" and fives.n_gaps == [0]  # what a step is, not how far apart the integers are
    assert fives.future_index(0, 2).tolist() == [60, 65]
    dated = load_series(pd.concat(rows).assign(t=lambda d: pd.date_range("2000-01-01", periods=120, freq="D")
                                                .repeat(1)[d.t - 1]), time_col="t")
    assert dated.inferred is None and dated.freq_info.season == 7


# ------------------------------------------------------------------ gaps and fill


def test_fill_modes_on_a_gap():
    ds = pd.date_range("2020-01-01", periods=7, freq="D")
    df = pd.DataFrame({"unique_id": "s", "ds": ds[[0, 1, 4, 5]], "y": [np.nan, 1.0, 4.0, 5.0]})
    df = pd.concat([df, pd.DataFrame({"unique_id": "s", "ds": [ds[6]], "y": [np.nan]})])
    got = {m: load_series(df, fill=m, min_length=1).values[0][:, 0] for m in ("mask", "ffill", "interpolate", "zero")}
    np.testing.assert_array_equal(got["mask"], [np.nan, 1, np.nan, np.nan, 4, 5, np.nan])
    np.testing.assert_array_equal(got["ffill"], [np.nan, 1, 1, 1, 4, 5, 5])
    np.testing.assert_array_equal(got["interpolate"], [np.nan, 1, 2, 3, 4, 5, 5])
    np.testing.assert_array_equal(got["zero"], [0, 1, 0, 0, 4, 5, 0])
    assert load_series(df, fill="none", min_length=1).n_gaps == [2]
    assert "unknown fill" in one_line_error(df, fill="bfill")


def test_fill_does_not_leak_across_series():
    df = pd.DataFrame({"unique_id": ["a"] * 3 + ["b"] * 3, "ds": list(pd.date_range("2020-01-01", periods=3)) * 2,
                       "y": [1.0, 2.0, 3.0, np.nan, 7.0, 8.0]})
    s = load_series(df, fill="ffill", min_length=2)
    assert np.isnan(s.values[1][0, 0]) and s.values[1][1, 0] == 7.0


# ------------------------------------------------------------------ bad input: one line each


def test_error_missing_column_names_it_and_lists_available():
    msg = one_line_error(long_frame(), target="sales")
    assert "'sales' not found" in msg and "unique_id, ds, y" in msg


def test_error_unknown_flag_column():
    msg = one_line_error(long_frame(), id_col="store", past_exog=["temp"])
    assert "'store', 'temp' not found" in msg


def test_error_cannot_tell_layout():
    df = pd.DataFrame({"name": ["a", "b"], "kind": ["x", "y"], "v": [1.0, 2.0]})
    assert one_line_error(df) == ("cannot tell long from wide format: pass --id-col/--time-col/--target "
                                  "(Python: id_col=, time_col=, target=)")


def test_error_non_numeric_target_names_column_and_value(tmp_path):
    df = long_frame(n=5)
    df["y"] = df["y"].astype(object)
    df.loc[3, "y"] = "12,5"
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    msg = one_line_error(path)
    assert "target column 'y' is not numeric" in msg and "'12,5'" in msg and "line 5" in msg


def test_error_unparseable_timestamp():
    df = long_frame(n=5)
    df["ds"] = df["ds"].astype(str)
    df.loc[2, "ds"] = "2020-13-45"
    msg = one_line_error(df)
    assert "cannot parse timestamp '2020-13-45'" in msg and "row 2" in msg


def test_error_missing_timestamp():
    df = long_frame(n=5)
    df["ds"] = df["ds"].astype(str)
    df.loc[1, "ds"] = None
    assert "missing timestamp" in one_line_error(df)


def test_a_long_table_whose_id_column_has_no_id_name_is_read_long():
    """``store, date, sales``: the date repeats, so the table is long, and only store tells the series
    apart; two columns together (store and department) cannot be guessed and are asked for."""
    dates = pd.date_range("2022-01-01", periods=40).strftime("%F")
    rng = np.random.default_rng(0)
    stores = pd.DataFrame({"store": np.repeat([1, 2, 3], 40), "date": np.tile(dates, 3), "sales": rng.random(120)})
    s = load_series(stores)
    assert (s.ids, s.layout, s.target_names, s.freq) == (["1", "2", "3"], "long", ["sales"], "D")
    named = stores.rename(columns={"store": "series", "sales": "value"})
    named["series"] = "s" + named["series"].astype(str)
    assert load_series(named).ids == ["s1", "s2", "s3"]
    both = pd.concat([stores.assign(dept=1), stores.assign(dept=2)], ignore_index=True)
    assert "no single column tells its series apart: pass --id-col" in one_line_error(both)
    wide = pd.DataFrame({"date": dates, "visits": rng.integers(0, 6, 40), "revenue": rng.random(40)})
    stray = pd.concat([wide, wide.iloc[[5]]], ignore_index=True)  # one duplicated day of a wide table: named
    assert "duplicate timestamp 2022-01-06" in one_line_error(stray)


def test_error_duplicate_timestamps():
    df = long_frame(n=5)
    df = pd.concat([df, df.iloc[[7]]], ignore_index=True)
    msg = one_line_error(df)
    assert "duplicate timestamp 2020-03-01" in msg and "'b'" in msg and "row 7 and row 11" in msg
    steps = pd.DataFrame({"t": [1, 2, 2, 3, 4], "y": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert "duplicate step 2 for series 'y' (row 1 and row 2)" in one_line_error(steps, time_col="t")


def test_error_irregular_timestamps_ask_for_freq():
    rng = np.random.default_rng(0)
    stamps = pd.Timestamp("2020-01-01") + pd.to_timedelta(np.sort(rng.choice(10**6, 30, replace=False)), unit="s")
    df = pd.DataFrame({"unique_id": "x", "ds": stamps, "y": 1.0})
    msg = one_line_error(df)
    assert "cannot infer the frequency of 'x'" in msg and "--freq" in msg


def test_error_mixed_frequencies_named():
    df = pd.concat([long_frame(ids=("m",), n=12, freq="MS"), long_frame(ids=("q",), n=12, freq="QS")])
    msg = one_line_error(df)
    assert "different frequencies" in msg and "'m' is MS" in msg and "is QS" in msg


def test_error_too_short_names_ids_and_minimum():
    df = pd.concat([long_frame(ids=("ok",), n=10), long_frame(ids=("tiny",), n=2)])
    msg = one_line_error(df, min_length=5)
    assert "fewer than 5 observed points" in msg and "'tiny' (2)" in msg and "'ok'" not in msg


def test_error_all_nan_series():
    df = long_frame(ids=("a", "b"), n=6)
    df.loc[df.unique_id == "b", "y"] = np.nan
    msg = one_line_error(df)
    assert "no values" in msg and "'b'" in msg
    wide = pd.DataFrame({"ds": pd.date_range("2020-01-01", periods=5), "u": np.arange(5.0), "v": np.nan})
    assert "'v'" in one_line_error(wide)


def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_table(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text("unique_id,ds,y\n")
    assert "no data rows" in one_line_error(header_only)


def test_error_missing_file(tmp_path):
    msg = one_line_error(tmp_path / "nope.csv")
    assert "not found" in msg and "nope.csv" in msg


def test_error_corrupt_files(tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    assert "cannot read" in one_line_error(garbage)
    broken = tmp_path / "broken.parquet"
    long_frame().to_parquet(broken)
    broken.write_bytes(broken.read_bytes()[:200])
    assert "cannot read" in one_line_error(broken) and "Parquet" in one_line_error(broken)
    bad_gz = tmp_path / "bad.csv.gz"
    bad_gz.write_bytes(b"this is not gzip at all\n" * 10)
    assert "cannot read" in one_line_error(bad_gz)


def test_error_infinite_value():
    df = long_frame(n=4)
    df.loc[2, "y"] = np.inf
    assert "infinite value" in one_line_error(df)


# ------------------------------------------------------------------ files


def test_read_table_formats(tmp_path):
    df = long_frame(n=6)
    df.to_parquet(tmp_path / "x.parquet")
    with gzip.open(tmp_path / "x.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    df.to_csv(tmp_path / "x.csv", sep=";", index=False)
    df.to_csv(tmp_path / "comma.csv", sep=";", decimal=",", index=False)  # Excel's CSV in much of Europe
    df.to_csv(tmp_path / "unicode.txt", sep="\t", index=False, encoding="utf-16")  # Excel's "Unicode text"
    ref = load_series(df)
    assert (df["y"] % 1 != 0).any()  # the decimal marks matter
    assert read_header(tmp_path / "unicode.txt") == list(df.columns)
    for name in ("x.parquet", "x.csv.gz", "x.csv", "comma.csv", "unicode.txt"):
        s = load_series(tmp_path / name)
        assert s.ids == ref.ids and s.freq == ref.freq
        for x, y in zip(s.values, ref.values):
            np.testing.assert_allclose(x, y, rtol=1e-6)


def test_a_parquet_file_is_read_as_the_frame_it_was_written_from(tmp_path):
    """pandas writes a frame's index and period columns into Parquet; the file reads as the frame does."""
    df = long_frame(n=6)
    frames = {"dated_index": df[df.unique_id == df.unique_id[0]].set_index("ds")[["y"]],
              "panel_index": df.set_index(["unique_id", "ds"]),
              "periods": df.assign(ds=df["ds"].dt.to_period("M"))}
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
        from_file, from_frame = load_series(tmp_path / f"{name}.parquet"), load_series(frame)
        assert (from_file.ids, from_file.freq, from_file.starts) == (from_frame.ids, from_frame.freq, from_frame.starts)
        assert not from_file.step_index and from_file.starts[0] == pd.Timestamp(df["ds"].iloc[0]), name


def test_decimal_comma_files_with_whole_numbers_and_thousands_read_as_excel_wrote_them(tmp_path):
    """Excel writes 4, not 4,0, and groups thousands with points: the share of commas cannot decide."""
    rows = ["Datum;Umsatz", "01.01.2023;-3,5", "01.02.2023;0", "01.03.2023;1.234,5", "01.04.2023;4", "01.05.2023;",
            "01.06.2023;2,25"]
    (tmp_path / "eu.csv").write_text("\n".join(rows) + "\n")
    eu = load_series(tmp_path / "eu.csv")
    assert eu.ids == ["Umsatz"] and eu.freq == "MS" and eu.starts[0] == pd.Timestamp("2023-01-01")
    np.testing.assert_array_equal(eu.values[0][:, 0], np.float32([-3.5, 0, 1234.5, 4, np.nan, 2.25]))
    (tmp_path / "points.csv").write_text("ds;a;b\n2023-01-01;1,5;0.5\n2023-01-02;2;1.5\n2023-01-03;3;2.5\n")
    with pytest.raises(InputError, match="not numeric"):  # decimal points elsewhere: 1,5 is not a number
        load_series(tmp_path / "points.csv", target="a")


def test_samples_load():
    air = load_series(REPO / "datasets" / "samples" / "air_passengers.csv")
    assert air.ids == ["AirPassengers"] and air.freq == "MS" and air.lengths.tolist() == [144]
    wide = load_series(REPO / "datasets" / "samples" / "wide_example.csv")
    assert wide.layout == "wide" and wide.ids == ["store_a", "store_b"] and wide.lengths.tolist() == [120, 120]


# ------------------------------------------------------------------ SeriesSet helpers


def test_seriesset_grid_helpers():
    s = load_series(long_frame(n=10, freq="QS", start="2019-04-01"))
    for i in range(len(s)):
        t = int(s.lengths[i])
        full = pd.date_range(s.starts[i], periods=t + 5, freq=s.freq)
        assert s.timestamps(i).equals(full[:t]) and s.future_index(i, 5).equals(full[t:])
    (head, tails), = backtest_windows(s, 3)
    assert head.lengths.tolist() == [7, 8] and [t.shape for t in tails] == [(3, 1), (3, 1)]
    # the held-out points as written: float64 decimals that are the stored float32 values exactly
    np.testing.assert_array_equal(np.vstack([head.values[1], tails[1].astype(np.float32)]), s.values[1])
    assert head.future_index(1, 3).equals(s.timestamps(1)[-3:])
    sub = s.subset([1])
    assert sub.ids == ["b"] and sub.values[0] is s.values[1]
    assert s.subset(np.array([False, True])).ids == ["b"]
    with pytest.raises(InputError, match="cannot hold out 10 points"):
        s.truncate(10)
    assert s.freq_info.season == 4 and s.freq_info.name == "Q"


def test_to_frame_round_trip():
    df = long_frame(n=8)
    df["temp"] = np.arange(len(df), dtype=float)
    s = load_series(df, past_exog=["temp"])
    back = load_series(s.to_frame(), past_exog=["temp"])
    assert back.ids == s.ids and back.starts == s.starts
    for a, b in zip(s.past_exog, back.past_exog):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ forecast_frame


def test_forecast_frame_columns_rows_and_stamps():
    s = load_series(long_frame(ids=("a", "b"), n=12, freq="MS"))
    h, levels = 3, [0.1, 0.5, 0.9]
    q = np.arange(2 * h * 1 * 3, dtype=np.float32).reshape(2, h, 1, 3)
    fc = forecast_frame(s, q, levels, names=["0.1", "0.5", "0.9"])
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"] and len(fc) == 2 * h
    assert fc.unique_id.tolist() == ["a"] * 3 + ["b"] * 3
    assert fc.ds.iloc[:3].tolist() == list(pd.date_range("2021-01-01", periods=3, freq="MS"))
    assert fc.ds.iloc[3] == pd.Timestamp("2021-02-01")  # b has one more month
    np.testing.assert_array_equal(fc["mean"], fc["0.5"])
    np.testing.assert_array_equal(fc[["0.1", "0.5", "0.9"]].to_numpy(), q.reshape(-1, 3))
    fc2 = forecast_frame(s, q, levels, mean=np.full((2, h, 1), 7.0))
    assert (fc2["mean"] == 7.0).all() and list(fc2.columns)[3:] == ["0.1", "0.5", "0.9"]


def test_forecast_frame_multichannel_adds_target_column():
    df = long_frame(ids=("a",), n=6)
    df["z"] = df["y"] * 2
    s = load_series(df, target=["y", "z"])
    q = np.zeros((1, 2, 2, 1))
    q[0, :, 1, 0] = 1.0
    fc = forecast_frame(s, q, [0.5])
    assert list(fc.columns) == ["unique_id", "ds", "target", "mean", "0.5"]
    assert fc.target.tolist() == ["y", "y", "z", "z"] and fc["mean"].tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError):
        forecast_frame(s, np.zeros((1, 2, 2, 2)), [0.1, 0.9])


# ------------------------------------------------------------------ GluonTS


@pytest.mark.parametrize("freq, pfreq", [("MS", "M"), ("QS", "Q-DEC"), ("W-SAT", "W-SAT"), ("B", "B"),
                                          ("30min", "30min"), ("YS", "Y-DEC")])
def test_gluonts_round_trip(freq, pfreq):
    df = long_frame(ids=("a", "b"), n=9, freq=freq, start="2018-01-01")
    df = df.drop(index=4)  # a gap stays NaN through the round trip
    df["promo"] = np.arange(len(df), dtype=float) % 2
    s = load_series(df, future_exog=["promo"])
    assert period_freq(s.freq) == pfreq
    entries = to_gluonts(s)
    assert entries[0]["target"].shape == (9,) and entries[0]["feat_dynamic_real"].shape == (1, 9)
    for back in (from_gluonts(entries), from_gluonts(to_list_dataset(s)), from_gluonts(entries, freq=s.freq)):
        assert back.ids == s.ids and back.freq == s.freq and back.starts == s.starts
        for a, b in zip(s.values, back.values):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(back.future_exog[1], s.future_exog[1])
        assert back.n_gaps == [1, 0]


def test_gluonts_multivariate_target_is_channels_by_time():
    s = load_series(long_frame(ids=("a", "b"), n=5), multivariate=True)
    entry = to_gluonts(s)[0]
    assert entry["target"].shape == (2, 6)
    back = from_gluonts([entry])
    np.testing.assert_array_equal(back.values[0], s.values[0])
    assert isinstance(back, SeriesSet) and back.target_names == ["target_0", "target_1"]


def test_gluonts_covariate_fields_run_at_least_as_long_as_the_target():
    start, target = pd.Period("2020-01-01", freq="D"), np.arange(50.0)
    one = from_gluonts([dict(start=start, target=target, feat_dynamic_real=np.ones(60))])  # one row, given 1-D
    assert one.future_exog[0].shape == (50, 1)
    with pytest.raises(InputError, match="past_feat_dynamic_real has 20 steps, fewer than its target's 50"):
        from_gluonts([dict(start=start, target=target, past_feat_dynamic_real=np.ones((1, 20)), item_id="a")])


# ------------------------------------------------------------------ issue 27: zones, steps, magnitudes, saved sets


def test_zones_steps_and_magnitudes_survive_save_and_load(tmp_path):
    from tsfm.data.saved_series import load_saved_series, save_series

    daily = pd.DataFrame({"unique_id": "d", "ds": pd.date_range("2021-03-20", periods=20, freq="D", tz="Europe/Paris"),
                          "y": np.arange(20.0) * 1e300})
    fixed = pd.DataFrame({"unique_id": "f", "ds": pd.date_range("2021-03-20", periods=30, freq="h", tz="Asia/Kolkata")
                          .astype(str), "y": np.arange(30.0) * 1e-300})
    steps = pd.DataFrame({"time": np.arange(3, 30, 3), "y": np.arange(9.0)})
    for df, tz, freq in ((daily, "Europe/Paris", "D"), (fixed, "UTC+05:30", "h"), (steps, None, "3ns")):
        s = load_series(df)
        assert s.freq == freq and str(s.timestamps(0).tz if tz else None) == str(tz)
        back = load_saved_series(save_series(s, tmp_path / "s.npz"))
        assert back.timestamps(0).equals(s.timestamps(0)) and back.future_index(0, 3).equals(s.future_index(0, 3))
        np.testing.assert_array_equal(back.values[0], s.values[0])
        pd.testing.assert_frame_equal(back.to_frame(), s.to_frame())
    s = load_series(daily)
    assert s.scales is not None and np.isfinite(s.values[0]).all()
    np.testing.assert_allclose(s.to_frame()["y"].to_numpy(), daily["y"].to_numpy(), rtol=1e-6)
    assert load_series(steps).future_index(0, 2).tolist() == [30, 33]


def test_row_labels_are_not_series_and_two_series_long_tables_are_found(tmp_path):
    """The index ``to_csv`` writes (an empty header) and the labels a filtered or shuffled frame keeps
    are not forecast as series; a long table of two equal-length series under a custom id is long."""
    ds = pd.date_range("2015-01-01", periods=40, freq="MS")
    wide = pd.DataFrame({"date": ds.strftime("%Y-%m-%d"), "a": np.arange(40.0), "b": np.arange(40.0) * 2})
    wide.to_csv(tmp_path / "indexed.csv")  # pandas' default: the row labels as a first, unnamed column
    for data in (wide[wide.date >= "2016-01-01"], wide.sample(frac=1.0, random_state=0), tmp_path / "indexed.csv"):
        assert load_series(data).ids == ["a", "b"]
    long = pd.DataFrame({"store": np.repeat(["north", "south"], 40), "date": np.tile(ds, 2), "sales": np.arange(80.0)})
    s = load_series(long)
    assert s.ids == ["north", "south"] and s.lengths.tolist() == [40, 40]


def test_a_wide_series_frequency_is_read_from_its_values():
    """Blank weekends in a daily wide table are business days, as a spreadsheet of market closes
    means; --freq D says otherwise (weekends become gaps)."""
    ds = pd.date_range("2024-01-01", periods=30, freq="D")
    y = np.where(ds.weekday < 5, np.arange(30.0), np.nan)
    wide = pd.DataFrame({"ds": ds, "a": y, "b": y})
    assert load_series(wide).freq == "B" and load_series(wide).lengths.tolist() == [22, 22]
    daily = load_series(wide, freq="D", fill="none")
    assert daily.freq == "D" and daily.lengths.tolist() == [30, 30]
