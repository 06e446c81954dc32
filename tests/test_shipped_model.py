"""The shipped pretrained models: output contract on every visible eval CSV (every shipped model,
through the API and the CLI), and sanity of the default TTM's forecasts."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import eval_dir
from tsfm import Forecaster, load_model
from tsfm.cli.main import app
from tsfm.data.freq import FREQ_VOCAB
from tsfm.data.loading import load_series
from tsfm.hub import WEIGHTS_DIR, load_suite, shipped_models
from tsfm.models.registry import FAMILIES

EVAL = eval_dir()
TASKS = json.loads((EVAL / "manifest.json").read_text())["tasks"] if EVAL else []
SHIPPED = shipped_models()
CHECKPOINTS = [n for n in SHIPPED if (WEIGHTS_DIR / n / "config.json").is_file()]
SUITES = [n for n in SHIPPED if load_suite(n) is not None]


def served_family(name: str) -> str:
    """The family a shipped checkpoint serves: its own, or for an ensemble its members' (one family)."""
    config = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    if config["family"] != "ensemble":
        return config["family"]
    (family,) = {m["family"] for m in config["members"]}
    return family


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_every_shipped_checkpoint_has_a_card_and_a_matching_family(name):
    config = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    assert config["family"] in FAMILIES
    family = served_family(name)
    assert name == family or name.startswith(family + "-")  # named after its (members') family
    card = (WEIGHTS_DIR / name / "README.md").read_text()
    assert "synthetic" in card and "command" in card.lower()
    model = load_model(name)
    assert model.num_parameters() < 5_000_000 and 0.5 in model.quantiles


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_lists_shipped_variants_of_its_family(name):
    suite = load_suite(name)
    variants = [variant for variant, _ in suite.variants]
    specialists = [special for _, _, special in suite.by_frequency]
    assert suite.default in variants and set(variants + specialists) <= set(CHECKPOINTS)
    assert {served_family(v) for v in variants + specialists} == {name}
    assert [min_history for _, min_history in suite.variants][0] == 0  # every history length has a variant
    assert all(f in FREQ_VOCAB and general in variants for f, general, _ in suite.by_frequency)
    assert "README.md" in {p.name for p in (WEIGHTS_DIR / name).iterdir()}


@pytest.mark.skipif(EVAL is None, reason="the visible eval set (../shared/data/eval) is not beside the repo")
@pytest.mark.parametrize("name", SHIPPED)
def test_cli_forecasts_an_eval_csv_with_every_shipped_model(name, tmp_path):
    task = next(t for t in TASKS if t["name"] == "us_change")
    out = tmp_path / "fc.csv"
    result = CliRunner().invoke(app, ["forecast", str(EVAL / task["file"]), "--model", name,
                                      "--horizon", str(task["horizon"]), "--output", str(out)])
    assert result.exit_code == 0, result.output
    fc = pd.read_csv(out)
    assert len(fc) == task["horizon"] * pd.read_csv(EVAL / task["file"]).unique_id.nunique()
    assert np.isfinite(fc.drop(columns=["unique_id", "ds"]).to_numpy()).all()


def test_shipped_ttm_loads_offline_and_is_small():
    model = load_model("ttm")
    assert model.config.family == "ttm"
    assert model.num_parameters() < 1_000_000
    assert model.config.context_length == 512 and 0.5 in model.quantiles


@pytest.mark.skipif(EVAL is None, reason="the visible eval set (../shared/data/eval) is not beside the repo")
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_forecast_contract_on_eval_csv(task, name):
    path = EVAL / task["file"]
    h = task["horizon"]
    fc = Forecaster(model=name, horizon=h, quantiles=(0.1, 0.5, 0.9)).fit(path).predict()
    df = pd.read_csv(path, parse_dates=["ds"])
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"]
    assert (fc.groupby("unique_id", sort=False).size() == h).all()
    assert fc.unique_id.nunique() == df.unique_id.nunique()
    assert not fc.isna().any().any()
    assert ((fc["0.1"] <= fc["0.5"]) & (fc["0.5"] <= fc["0.9"])).all()
    series = load_series(path)
    offset = pd.tseries.frequencies.to_offset(series.freq)
    for sid, rows in fc.groupby("unique_id", sort=False):
        last = df[df.unique_id.astype(str) == str(sid)].ds.max()
        expected = pd.date_range(last, periods=h + 1, freq=offset)[1:]
        assert list(pd.to_datetime(rows.ds)) == list(expected)


@pytest.mark.skipif(EVAL is None, reason="the visible eval set is not beside the repo")
def test_wide_and_long_inputs_agree_on_eval_data(tmp_path):
    long = pd.read_csv(EVAL / "us_change.csv", parse_dates=["ds"])
    wide = long.pivot(index="ds", columns="unique_id", values="y").reset_index()
    wide_path = tmp_path / "wide.csv"
    wide.to_csv(wide_path, index=False)
    a = Forecaster(horizon=8).fit(EVAL / "us_change.csv").predict().sort_values(["unique_id", "ds"])
    b = Forecaster(horizon=8).fit(wide_path).predict().sort_values(["unique_id", "ds"])
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_forecasts_follow_a_clear_seasonal_pattern():
    """A clean monthly seasonal series: the median continues the pattern (far better than the mean)."""
    t = np.arange(144)
    y = 100 + 20 * np.sin(2 * np.pi * t / 12) + 0.3 * t
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2000-01-01", periods=144, freq="MS"), "y": y})
    fc = Forecaster(horizon=12).fit(df.iloc[:132]).predict()
    truth = y[132:]
    mae = np.abs(fc["0.5"].to_numpy() - truth).mean()
    assert mae < 0.25 * np.abs(truth - truth.mean()).mean()


def test_a_zero_floored_series_gets_no_negative_forecast(tmp_path):
    """Half-hourly solar-like power (zero at night): the network alone forecasts below zero at
    night; a context with no negative value is floored (API and CLI), unless told otherwise. Without
    calibration the floor is exactly max(raw, 0); calibrated intervals are floored too."""
    t = np.arange(48 * 8)
    day = np.clip(np.sin(2 * np.pi * ((t % 48) - 12) / 24), 0, None) ** 1.5
    y = np.round(3.0 * day * np.random.default_rng(0).uniform(0.6, 1.0, len(t)), 2)
    df = pd.DataFrame({"unique_id": "pv", "ds": pd.date_range("2024-06-01", periods=len(t), freq="30min"), "y": y})
    cols = ["mean", "0.1", "0.5", "0.9"]
    raw = Forecaster(horizon=48, nonnegative=False, calibration_windows=0).fit(df).predict()
    floored = Forecaster(horizon=48, calibration_windows=0).fit(df).predict()
    assert (Forecaster(horizon=48).fit(df).predict()[cols].to_numpy() >= 0).all()
    assert (raw["0.1"] < -0.05).sum() >= 10  # the floor has work to do
    np.testing.assert_array_equal(floored[cols].to_numpy(), np.maximum(raw[cols].to_numpy(), 0))
    shifted = Forecaster(horizon=48).fit(df.assign(y=df.y - 0.01)).predict()  # one value below 0: no floor
    assert (shifted["0.1"] < -0.05).sum() >= 10
    df.to_csv(tmp_path / "pv.csv", index=False)
    for flag, want in (([], floored), (["--allow-negative"], raw)):
        out = tmp_path / f"fc{len(flag)}.csv"
        result = CliRunner().invoke(app, ["forecast", str(tmp_path / "pv.csv"), "-H", "48", "-o", str(out),
                                          "--calibration-windows", "0", *flag])
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(pd.read_csv(out)[cols].to_numpy(), want[cols].to_numpy(), rtol=1e-6, atol=1e-6)


def test_forecasts_continue_a_cycle_at_a_non_calendar_period():
    """Yearly cycles of 9.6-13.7 years (lynx, sunspots): no calendar gives the period, the values do.
    ttm-96 before its free-cycle phases scored 0.65-0.91 of the naive error here, after them
    0.21-0.58; ttm-96-yearly 0.14-0.20; `ttm` serves yearly data with ttm-96-yearly-ensemble, 0.09-0.11."""
    t = np.arange(160)
    ratios = []
    for period in (9.6, 11.0, 13.7):
        y = 50 + 30 * np.sin(2 * np.pi * t / period + 0.7)
        df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("1800-01-01", periods=148, freq="YS"), "y": y[:148]})
        fc = Forecaster(horizon=12).fit(df).predict()
        ratios.append(np.abs(fc["0.5"].to_numpy() - y[148:]).mean() / np.abs(y[147] - y[148:]).mean())
    assert max(ratios) < 0.4 and np.mean(ratios) < 0.3


def test_ttm_serves_yearly_quarterly_and_monthly_data_with_their_specialists():
    """suite.json: ttm-96-yearly-ensemble, ttm-96-quarterly-ensemble and ttm-96-monthly stand in for
    ttm-96-general on their resolutions; long histories get ttm-512 (monthly and weekly alike),
    short daily and hourly data keep ttm-96-general."""
    def frame(n: int, freq: str) -> pd.DataFrame:
        return pd.DataFrame({"unique_id": "a", "ds": pd.date_range("1800-01-01", periods=n, freq=freq),
                             "y": np.linspace(1.0, 2.0, n)})

    assert [Forecaster(horizon=3).fit(frame(n, "YS")).model_name_ for n in (20, 300)] == ["ttm-96-yearly-ensemble"] * 2
    assert Forecaster(horizon=3).fit(frame(60, "QS")).model_name_ == "ttm-96-quarterly-ensemble"
    short_daily_and_hourly = (frame(60, "D"), frame(200, "h"))
    assert [Forecaster(horizon=3).fit(f).model_name_ for f in short_daily_and_hourly] == ["ttm-96-general"] * 2
    assert Forecaster(horizon=3).fit(frame(100, "MS")).model_name_ == "ttm-96-monthly"
    assert Forecaster(horizon=3).fit(frame(600, "MS")).model_name_ == "ttm-512"
    assert Forecaster(horizon=3).fit(frame(600, "W")).model_name_ == "ttm-512"


@pytest.mark.parametrize("name", [n for n in CHECKPOINTS if json.loads(
    (WEIGHTS_DIR / n / "config.json").read_text())["family"] == "ensemble"])
def test_shipped_ensembles_hold_their_named_members_weights(name):
    """An ensemble's config and card name its members (each shipped too) and it stores no copy of
    their weights: it references them with their digests, so a member retrained without
    re-releasing the ensemble fails here."""
    ensemble = load_model(name)
    members = ensemble.config.labels
    assert re.findall(r"^\| `([^`]+)` \| \w[\w-]* \| [\d.]+ \|", (WEIGHTS_DIR / name / "README.md").read_text(),
                      re.M) == list(members)
    assert len(members) == len(ensemble.members) >= 2
    stored = json.loads((WEIGHTS_DIR / name / "config.json").read_text())  # references, no copies of weights
    assert [r["checkpoint"] for r in stored["member_checkpoints"]] == list(members)
    assert (WEIGHTS_DIR / name / "model.safetensors").stat().st_size < 1000
    for member, module in zip(members, ensemble.members):
        shipped = load_model(member).state_dict()
        assert module.config == load_model(member).config
        assert all(torch.equal(v, shipped[k]) for k, v in module.state_dict().items())


def test_short_yearly_series_get_sensible_forecasts():
    """Tens of points (masked padding): forecasts stay near the recent level, not near zero padding."""
    rng = np.random.default_rng(0)
    y = 50 + np.cumsum(rng.normal(0.5, 1.0, 30))
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("1990-01-01", periods=30, freq="YS"), "y": y})
    fc = Forecaster(horizon=6).fit(df).predict()
    assert np.all(np.abs(fc["0.5"].to_numpy() - y[-1]) < 10 * np.std(np.diff(y)) + 5)
    assert (fc["0.9"] - fc["0.1"] > 0).all()


def test_scaling_invariance_of_the_shipped_model():
    rng = np.random.default_rng(1)
    y = 10 + np.cumsum(rng.normal(size=200)) + 3 * np.sin(np.arange(200) * 2 * np.pi / 7)
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2020-01-01", periods=200, freq="D"), "y": y})
    # without seasonal adjustment the suite forecasts raw values: scale and shift commute
    base = Forecaster(horizon=14, seasonal_adjustment=False).fit(df).predict()
    scaled = Forecaster(horizon=14, seasonal_adjustment=False).fit(df.assign(y=3.0 * y + 1000.0)).predict()
    np.testing.assert_allclose(scaled["0.5"], 3.0 * base["0.5"] + 1000.0, rtol=1e-4)
    # multiplicative seasonal indices (the suite's default) are unchanged by a scale, not by a shift
    shifted = df.assign(y=y + 1000.0)
    adjusted = Forecaster(horizon=14).fit(shifted)
    assert adjusted.plan_.seasonal_adjustment
    np.testing.assert_allclose(Forecaster(horizon=14).fit(shifted.assign(y=3.0 * shifted.y)).predict()["0.5"],
                               3.0 * adjusted.predict()["0.5"], rtol=1e-4)
    assert np.abs(adjusted.predict()["0.5"] - (base["0.5"] + 1000.0)).max() > 1e-3  # not the raw-space forecast
    # in log space (an option) a positive seasonal series keeps scale invariance, a shift is not one
    positive = df.assign(y=y + 1000.0)
    logged = Forecaster(horizon=14, log_scale="seasonal", seasonal_adjustment=False).fit(positive).predict()
    times_three = Forecaster(horizon=14, log_scale="seasonal", seasonal_adjustment=False).fit(
        positive.assign(y=3.0 * positive.y)).predict()
    np.testing.assert_allclose(times_three["0.5"], 3.0 * logged["0.5"], rtol=1e-4)
    assert np.abs(logged["0.5"] - (base["0.5"] + 1000.0)).max() > 1e-3  # not the raw-space forecast


SCAN_MODELS = [n for n in CHECKPOINTS if "scan_backend" in json.loads((WEIGHTS_DIR / n / "config.json").read_text())]


@pytest.mark.parametrize("name", SCAN_MODELS)
def test_switching_the_scan_backend_keeps_the_shipped_forecast(name, one_torch_thread):
    """Issue 6: reference vs chunked scans change the shipped models' forecasts by < 1e-4 relative.
    40 variates: S-Mamba's scan over variate tokens then spans several chunks."""
    from conftest import seasonal_walks
    from tsfm.kernels import scan_backend

    model = load_model(name)
    x = seasonal_walks(2, model.config.context_length, 40, seed=3)
    x[0, :100, 5] = float("nan")  # a short history among them
    with torch.inference_mode():
        outs = {}
        for backend in ("reference", "chunked"):
            with scan_backend(backend):
                outs[backend] = model(x)
    ref, chunked = outs["reference"].double(), outs["chunked"].double()
    assert torch.isfinite(ref).all()
    assert ((chunked - ref).abs().max() / ref.abs().max()).item() < 1e-4
