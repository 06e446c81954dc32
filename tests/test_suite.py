"""Model suites: one shipped name served by several checkpoints, one chosen per dataset by the
series' typical length and their frequency's season."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import monthly_frame
from tsfm import hub
from tsfm.models.ttm import TTM, TTMConfig


@pytest.fixture()
def suite_dir(tmp_path, monkeypatch):
    """Weights folder with tiny TTMs `mini-16` (context 16) and `mini-64` (context 64) and suite `mini`."""
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path)
    for context in (16, 64):
        torch.manual_seed(context)
        model = TTM(TTMConfig.tiny(context_length=context, patch_length=8, prediction_length=8)).eval()
        hub.save_pretrained(model, tmp_path / f"mini-{context}")
    (tmp_path / "mini").mkdir()
    spec = {"default": "mini-64", "min_seasons": 2,
            "variants": [{"name": "mini-64", "min_history": 40}, {"name": "mini-16", "min_history": 0}]}
    (tmp_path / "mini" / hub.SUITE_FILE).write_text(json.dumps(spec))
    return tmp_path


def frame(length: int, freq: str, n_series: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2001-01-01", periods=length, freq=freq),
                                    "y": 10 + rng.normal(size=length).cumsum()}) for i in range(n_series)])


def test_suite_chooses_by_typical_length_and_season(suite_dir) -> None:
    suite = hub.load_suite("mini")
    assert suite.variants == (("mini-16", 0), ("mini-64", 40))
    assert suite.select(30, season=1) == "mini-16"
    assert suite.select(40, season=1) == "mini-64"
    assert suite.select(30, season=12) == "mini-64"  # 16 steps cover less than two years of months
    assert suite.select(30, season=4) == "mini-16"
    assert suite.select(30, season=40) == "mini-64"  # no variant covers two seasons: the default
    assert hub.select_checkpoint("mini", 30, 1) == "mini-16"
    assert hub.select_checkpoint("mini-16", 500, 1) == "mini-16"  # a checkpoint is itself


@pytest.fixture()
def yearly_suite(suite_dir):
    """Suite `minif`: `mini-16` from 0 points, `mini-64` from 40; on yearly data `mini-64-y` (a copy
    of `mini-64`) stands in for `mini-64`."""
    import shutil

    shutil.copytree(suite_dir / "mini-64", suite_dir / "mini-64-y")
    (suite_dir / "minif").mkdir()
    spec = {"default": "mini-64", "by_frequency": {"Y": {"mini-64": "mini-64-y"}},
            "variants": [{"name": "mini-16", "min_history": 0}, {"name": "mini-64", "min_history": 40}]}
    (suite_dir / "minif" / hub.SUITE_FILE).write_text(json.dumps(spec))
    return suite_dir


def test_a_specialist_stands_in_for_its_variant_on_its_resolution(yearly_suite) -> None:
    from tsfm import Forecaster

    suite = hub.load_suite("minif")
    assert suite.by_frequency == (("Y", "mini-64", "mini-64-y"),)
    assert suite.specialist("mini-64", "Y") == "mini-64-y" and suite.specialist("mini-16", "Y") is None
    assert [suite.select(h, 1, "Y") for h in (10, 500)] == ["mini-16", "mini-64-y"]  # the length rule first
    assert [suite.select(h, 4, "Q") for h in (10, 500)] == ["mini-16", "mini-64"]
    assert hub.select_checkpoint("minif", 500, 1, "Y") == "mini-64-y"
    assert hub.load_suite("mini").by_frequency == ()  # optional in suite.json
    assert Forecaster(model="minif", horizon=3).fit(frame(200, "YS")).model_name_ == "mini-64-y"
    assert Forecaster(model="minif", horizon=3).fit(frame(200, "YE")).model_name_ == "mini-64-y"  # any yearly alias
    assert Forecaster(model="minif", horizon=3).fit(frame(200, "QS")).model_name_ == "mini-64"
    assert Forecaster(model="minif", horizon=3).fit(frame(30, "YS")).model_name_ == "mini-16"


def test_cli_says_a_specialist_was_chosen_for_the_resolution(yearly_suite, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tsfm.cli.main import app
    from tsfm.models import registry

    monkeypatch.setitem(registry.FAMILIES, "minif", registry.FAMILIES["ttm"])
    listing = CliRunner().invoke(app, ["models"])
    assert listing.exit_code == 0 and "Y data: mini-64-y in place of mini-64" in listing.stdout
    assert any(line.startswith("mini-64-y ") and line.endswith("; in suite minif, stands in for mini-64 on Y data")
               for line in listing.stdout.splitlines())
    path = tmp_path / "yearly.csv"
    frame(60, "YS").to_csv(path, index=False)
    result = CliRunner().invoke(app, ["forecast", str(path), "--model", "minif", "--horizon", "3"])
    assert result.exit_code == 0, result.output
    assert "model mini-64-y (from suite minif: median history 60 points, Y data)" in result.stderr


def test_suite_name_loads_its_default_and_is_listed(suite_dir) -> None:
    assert hub.shipped_models() == ["mini", "mini-16", "mini-64"]
    assert hub.resolve("mini") == suite_dir / "mini-64"
    assert hub.load_model("mini").config.context_length == 64


def test_forecaster_loads_the_variant_for_its_data(suite_dir) -> None:
    from tsfm import Forecaster

    short, long_ = frame(30, "YS"), frame(200, "YS")
    f = Forecaster(model="mini", horizon=4).fit(short)
    assert f.model_name_ == "mini-16" and f.model_.config.context_length == 16 and f.history_length_ == 30
    want = Forecaster(model="mini-16", horizon=4).fit(short).predict()
    pd.testing.assert_frame_equal(f.predict(), want)
    f.fit(long_)
    assert f.model_name_ == "mini-64" and f.model_.config.context_length == 64
    assert Forecaster(model="mini", horizon=4).fit(monthly_frame(2, 30)).model_name_ == "mini-64"  # season 12


def test_cli_says_which_variant_it_chose(suite_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from tsfm.cli.main import app

    path = tmp_path / "short.csv"
    frame(30, "YS").to_csv(path, index=False)
    result = CliRunner().invoke(app, ["forecast", str(path), "--model", "mini", "--horizon", "3"])
    assert result.exit_code == 0, result.output
    assert "model mini-16 (from suite mini: median history 30 points)" in result.stderr


def test_models_command_shows_suite_rule_and_variants(suite_dir, monkeypatch) -> None:
    import shutil

    from typer.testing import CliRunner

    from tsfm.cli.main import app
    from tsfm.models import registry

    monkeypatch.setitem(registry.FAMILIES, "mini", registry.FAMILIES["ttm"])
    shutil.copytree(suite_dir / "mini-16", suite_dir / "mini-16-a-long-name")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("mini") and "suite" in line for line in lines)
    assert "picks a variant by median history length: mini-16 from 0 points, mini-64 from 40 points" in result.stdout
    assert any(line.startswith("mini-16") and "context 16, horizon 8" in line for line in lines)
    starts = {line.index("shipped") for line in lines if " shipped " in line}
    assert len(starts) == 1  # one column for every name, the longest included
    assert "seasonally adjusted" not in result.stdout
    spec = json.loads((suite_dir / "mini" / hub.SUITE_FILE).read_text())
    (suite_dir / "mini" / hub.SUITE_FILE).write_text(json.dumps({**spec, "seasonal_adjustment": True}))
    assert "forecasts seasonal series seasonally adjusted (--no-seasonal-adjustment)" in " ".join(
        CliRunner().invoke(app, ["models"]).stdout.split())


def test_a_fine_tuned_model_is_kept_for_new_data_until_the_model_changes(suite_dir) -> None:
    from tsfm import Forecaster

    data = frame(120, "YS", n_series=4)
    f = Forecaster(model="mini-16", horizon=4)
    f.finetune(data, fraction=1.0, max_steps=2, progress=False)
    tuned = f.model_
    assert f.fit(frame(200, "YS")).model_ is tuned  # new data, same model: the fine-tune stays
    f.set_params(model="mini-64").fit(data)
    assert f.model_name_ == "mini-64"
    f.set_params(model="mini-16").fit(data)
    assert f.model_ is not tuned  # asked for the named weights again: fresh, not the old fine-tune
    fresh = hub.load_model("mini-16").state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in f.model_.state_dict().items())


def test_unknown_model_fails_before_the_data_is_read(tmp_path) -> None:
    from tsfm import Forecaster
    from tsfm.errors import InputError

    with pytest.raises(InputError, match="unknown model 'ttmm'"):
        Forecaster(model="ttmm").fit(tmp_path / "missing.csv")


def test_a_folder_cannot_be_both_suite_and_checkpoint(suite_dir) -> None:
    from tsfm.errors import InputError

    (suite_dir / "mini" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="both a suite and a checkpoint"):
        hub.load_suite("mini")


def test_a_suite_folder_mixes_its_own_checkpoints_with_shipped_ones(suite_dir, tmp_path_factory) -> None:
    """A trial suite: `short` is a checkpoint beside suite.json, `mini-64` a shipped name, and the
    yearly specialist an absolute path; selection, the default and forecasts follow them."""
    import shutil

    from tsfm import Forecaster

    trial = tmp_path_factory.mktemp("trial")
    shutil.copytree(suite_dir / "mini-16", trial / "short")
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "yearly"
    shutil.copytree(suite_dir / "mini-64", elsewhere)
    spec = {"default": "short", "by_frequency": {"Y": {"mini-64": str(elsewhere)}},
            "variants": [{"name": "short", "min_history": 0}, {"name": "mini-64", "min_history": 40}]}
    (trial / hub.SUITE_FILE).write_text(json.dumps(spec))
    suite = hub.load_suite(trial)
    assert suite.root == trial and hub.resolve(trial) == trial / "short"
    assert suite.select(30, season=1) == str(trial / "short")
    assert suite.select(50, season=1) == "mini-64" and suite.select(50, season=1, freq="Y") == str(elsewhere)
    short = frame(30, "QS")
    f = Forecaster(model=str(trial), horizon=4).fit(short)
    assert f.model_name_ == str(trial / "short") and f.model_.config.context_length == 16
    pd.testing.assert_frame_equal(f.predict(), Forecaster(model="mini-16", horizon=4).fit(short).predict())
    assert Forecaster(model=str(trial), horizon=4).fit(frame(60, "YS")).model_name_ == str(elsewhere)
    assert hub.load_suite(suite_dir / "mini-16") is None  # a checkpoint folder is not a suite
    from tsfm.errors import InputError

    with pytest.raises(InputError, match="not a tsfm checkpoint or suite: .*suite.json"):
        hub.resolve(tmp_path_factory.mktemp("empty"))


@pytest.fixture()
def ensemble_suite(suite_dir):
    """Suite `minie`: `mini-16` from 0 points; from 40 points `mini-ens` (mini-64 + mini-16 averaged),
    listed before `mini-64` for the same history; the suite forecasts seasonal data in log space."""
    from tsfm.models.ensemble import Ensemble

    members = [hub.load_model("mini-64"), hub.load_model("mini-16")]
    hub.save_pretrained(Ensemble.from_models(members, labels=["mini-64", "mini-16"]), suite_dir / "mini-ens")
    (suite_dir / "minie").mkdir()
    spec = {"default": "mini-64", "log_scale": "seasonal",
            "variants": [{"name": "mini-16", "min_history": 0}, {"name": "mini-ens", "min_history": 40},
                         {"name": "mini-64", "min_history": 40}]}
    (suite_dir / "minie" / hub.SUITE_FILE).write_text(json.dumps(spec))
    return suite_dir


def test_an_ensemble_variant_needs_every_member_to_cover_the_seasons(ensemble_suite) -> None:
    suite = hub.load_suite("minie")
    assert suite.context_length("mini-ens") == 16 and suite.context_length("mini-64") == 64
    assert suite.select(50, season=1) == "mini-ens"  # first listed of the two for 40 points
    assert suite.select(50, season=4) == "mini-ens"  # 16 steps cover two seasons of 4
    assert suite.select(50, season=12) == "mini-64"  # its 16-step member does not cover two years of months
    assert suite.select(30, season=4) == "mini-16"
    assert suite.log_scale == "seasonal" and hub.load_suite("mini").log_scale == "never"


def positive_frame(freq: str, length: int = 80) -> pd.DataFrame:
    """Two series growing with a swing proportional to the level, and one that touches zero."""
    t = np.arange(length)
    grow = 50 * np.exp(0.01 * t) * (1 + 0.3 * np.sin(2 * np.pi * t / 4))
    ds = pd.date_range("2001-01-01", periods=length, freq=freq)
    return pd.concat([pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})
                      for uid, y in (("a", grow), ("b", 2 * grow), ("zero", np.where(t % 9 == 0, 0.0, grow)))])


def test_the_suite_forecasts_positive_seasonal_series_in_log_space(ensemble_suite) -> None:
    """log_scale "seasonal" (the suite's): exp of the variant's forecast of the logs, kept within the
    widened log range; a series with a zero, yearly data, "never" and a plain checkpoint stay raw."""
    from tsfm import Forecaster
    from tsfm.errors import InputError

    cols = ["mean", "0.1", "0.5", "0.9"]
    data = positive_frame("QS")
    suite = Forecaster(model="minie", horizon=6).fit(data)
    assert suite.model_name_ == "mini-ens"
    got = suite.predict().set_index("unique_id")
    raw = Forecaster(model="mini-ens", horizon=6).fit(data).predict().set_index("unique_id")
    assert Forecaster(model="minie", horizon=6, log_scale="never").fit(data).predict().equals(raw.reset_index())
    logs = Forecaster(model="mini-ens", horizon=6).fit(data.assign(y=np.log(data.y.clip(lower=1e-9))))
    in_log = logs.predict().set_index("unique_id")
    for uid in ("a", "b"):
        context = np.log(data[data.unique_id == uid].y.to_numpy()[-64:])
        lo, hi = context.min(), context.max()
        want = np.exp(np.clip(in_log.loc[uid, cols].to_numpy(), 2 * lo - hi, 2 * hi - lo))
        np.testing.assert_allclose(got.loc[uid, cols].to_numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(got.loc["b", cols].to_numpy(), 2 * got.loc["a", cols].to_numpy(), rtol=1e-4)
    np.testing.assert_array_equal(got.loc["zero", cols].to_numpy(), raw.loc["zero", cols].to_numpy())
    assert not np.allclose(got.loc["a", cols].to_numpy(), raw.loc["a", cols].to_numpy(), rtol=1e-3)

    yearly = positive_frame("YS")
    pd.testing.assert_frame_equal(Forecaster(model="minie", horizon=6).fit(yearly).predict(),
                                  Forecaster(model="mini-ens", horizon=6).fit(yearly).predict())
    positive = Forecaster(model="mini-ens", horizon=6, log_scale="positive").fit(yearly).predict()
    assert not np.allclose(positive[cols].to_numpy(),
                           Forecaster(model="mini-ens", horizon=6).fit(yearly).predict()[cols].to_numpy(), rtol=1e-3)
    with pytest.raises(InputError, match="log_scale must be None .* seasonal, positive, never"):
        Forecaster(model="minie", log_scale="log").fit(data)
    tuned = Forecaster(model="minie", horizon=6).finetune(data, fraction=1.0, max_steps=1, progress=False)
    assert tuned.plan_.log_scale == "never"  # fine-tuned on raw values: forecast raw values


def test_a_bad_log_scale_in_suite_json_is_one_line(ensemble_suite) -> None:
    from tsfm.errors import InputError

    spec = json.loads((ensemble_suite / "minie" / hub.SUITE_FILE).read_text())
    (ensemble_suite / "minie" / hub.SUITE_FILE).write_text(json.dumps({**spec, "log_scale": "yes"}))
    with pytest.raises(InputError, match="log_scale must be one of seasonal, positive, never, got 'yes'"):
        hub.load_suite("minie")


def test_cli_log_scale_option(ensemble_suite, tmp_path) -> None:
    from typer.testing import CliRunner

    from tsfm import Forecaster
    from tsfm.cli.main import app

    path = tmp_path / "grow.csv"
    positive_frame("QS").to_csv(path, index=False)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["forecast", str(path), "-m", "minie", "-H", "4", "--log-scale", "never",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    want = Forecaster(model="mini-ens", horizon=4).fit(path).predict()
    np.testing.assert_allclose(pd.read_csv(out)[["0.1", "0.5", "0.9"]], want[["0.1", "0.5", "0.9"]], rtol=1e-6)
    assert "model mini-ens (from suite minie: median history 80 points)" in result.stderr
    default = CliRunner().invoke(app, ["forecast", str(path), "-m", "minie", "-H", "4"])
    assert default.exit_code == 0, default.output
    assert ("model mini-ens (from suite minie: median history 80 points; positive contexts in log space, "
            "--log-scale seasonal)") in default.stderr
    bad = CliRunner().invoke(app, ["forecast", str(path), "-m", "minie", "--log-scale", "sometimes"])
    assert bad.exit_code == 2 and bad.output.strip().splitlines() == [
        "error: log_scale must be None (the model's choice) or one of seasonal, positive, never, got 'sometimes'"]


def test_cli_seasonal_adjustment_option(suite_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from tsfm import Forecaster
    from tsfm.cli.main import app

    spec = json.loads((suite_dir / "mini" / hub.SUITE_FILE).read_text())
    (suite_dir / "mini" / hub.SUITE_FILE).write_text(json.dumps({**spec, "seasonal_adjustment": True}))
    path = tmp_path / "grow.csv"
    positive_frame("QS").to_csv(path, index=False)
    cols = ["0.1", "0.5", "0.9"]
    for flag, model in (("--no-seasonal-adjustment", "mini-64"), ("--seasonal-adjustment", "mini")):
        out = tmp_path / "out.csv"
        result = CliRunner().invoke(app, ["forecast", str(path), "-m", "mini", "-H", "4", flag, "-o", str(out)])
        assert result.exit_code == 0, result.output
        want = Forecaster(model=model, horizon=4).fit(path).predict()
        np.testing.assert_allclose(pd.read_csv(out)[cols], want[cols], rtol=1e-5)
        adjusted = "seasonal adjustment where" in result.stderr
        assert adjusted == (flag == "--seasonal-adjustment"), result.stderr


def test_a_saved_suite_forecaster_keeps_forecasting_in_log_space(ensemble_suite, tmp_path) -> None:
    """save() writes the checkpoint the suite chose, and with it the suite's log_scale choice."""
    from tsfm import Forecaster

    data = positive_frame("QS")
    f = Forecaster(model="minie", horizon=5).fit(data)
    loaded = Forecaster.load(f.save(tmp_path / "saved"))
    assert loaded.log_scale == "seasonal"
    pd.testing.assert_frame_equal(loaded.fit(data).predict(), f.predict())


def test_the_suite_forecasts_seasonal_series_seasonally_adjusted(suite_dir, tmp_path) -> None:
    """seasonal_adjustment (a suite's choice): the chosen checkpoint forecasts the context divided by
    its seasonal indices, and the forecast is multiplied back; a series with a zero, False, a plain
    checkpoint and a fine-tuned model forecast the raw values; a saved Forecaster keeps the choice."""
    from tsfm import Forecaster
    from tsfm.errors import InputError
    from tsfm_runtime.rules import seasonal_factors

    spec = json.loads((suite_dir / "mini" / hub.SUITE_FILE).read_text())
    (suite_dir / "mini" / hub.SUITE_FILE).write_text(json.dumps({**spec, "seasonal_adjustment": True}))
    cols = ["mean", "0.1", "0.5", "0.9"]
    data = positive_frame("QS")
    suite = Forecaster(model="mini", horizon=6).fit(data)
    assert suite.model_name_ == "mini-64" and suite.plan_.seasonal_adjustment
    assert "seasonal adjustment where" in suite.plan_.reason
    got = suite.predict().set_index("unique_id")
    raw = Forecaster(model="mini-64", horizon=6).fit(data).predict().set_index("unique_id")
    assert not raw.equals(got)
    for uid in ("a", "b"):
        context = data[data.unique_id == uid].iloc[-64:]
        y = context.y.to_numpy(np.float32)[None, :, None]
        past, ahead = seasonal_factors(y, np.ones_like(y), 4, 6)
        adjusted = Forecaster(model="mini-64", horizon=6).fit(context.assign(y=y[0, :, 0] / past[0, :, 0]))
        want = adjusted.predict()[cols].to_numpy() * ahead[0, :, :]
        np.testing.assert_allclose(got.loc[uid, cols].to_numpy(), want, rtol=1e-4)
    np.testing.assert_array_equal(got.loc["zero", cols].to_numpy(), raw.loc["zero", cols].to_numpy())
    off = Forecaster(model="mini", horizon=6, seasonal_adjustment=False).fit(data).predict()
    pd.testing.assert_frame_equal(off, raw.reset_index())
    assert not Forecaster(model="mini-64", horizon=6).fit(data).plan_.seasonal_adjustment
    loaded = Forecaster.load(suite.save(tmp_path / "saved"))
    assert loaded.seasonal_adjustment is True
    pd.testing.assert_frame_equal(loaded.fit(data).predict(), suite.predict())
    tuned = Forecaster(model="mini", horizon=6).finetune(data, fraction=1.0, max_steps=1, progress=False)
    assert not tuned.plan_.seasonal_adjustment  # fine-tuned on raw values: forecast raw values
    with pytest.raises(InputError, match="seasonal_adjustment must be None .*, True or False, got 'yes'"):
        Forecaster(model="mini", seasonal_adjustment="yes").fit(data)
    (suite_dir / "mini" / hub.SUITE_FILE).write_text(json.dumps({**spec, "seasonal_adjustment": "yes"}))
    with pytest.raises(InputError, match="seasonal_adjustment must be true or false, got 'yes'"):
        hub.load_suite("mini")


def test_an_export_never_replaces_the_suite_it_reads(suite_dir, tmp_path_factory) -> None:
    """The export replaces its output folder whole: the suite's own folder, a folder holding it, a
    link to it, or a checkpoint it reads are refused before anything is written."""
    import shutil

    from tsfm.errors import InputError
    from tsfm.export.onnx_export import export_suite

    trial = tmp_path_factory.mktemp("trial") / "suite"
    shutil.copytree(suite_dir / "mini-16", trial / "short")
    spec = {"default": "short", "variants": [{"name": "short", "min_history": 0},
                                             {"name": "mini-64", "min_history": 40}]}
    (trial / hub.SUITE_FILE).write_text(json.dumps(spec))
    link = trial.parent / "link"
    link.symlink_to(trial)
    before = sorted(p.relative_to(trial) for p in trial.rglob("*"))
    for output in (trial, trial.parent, link, suite_dir / "mini-64", suite_dir):
        with pytest.raises(InputError, match="which the export reads"):
            export_suite(str(trial), output)
    assert sorted(p.relative_to(trial) for p in trial.rglob("*")) == before
    assert (suite_dir / "mini-64" / "model.safetensors").exists()


@pytest.fixture()
def exported_suite(suite_dir, tmp_path_factory, monkeypatch):
    """Suite `mini` with a monthly specialist, seasonal adjustment and calibrated intervals, exported
    to a folder (given as a relative path, as a user types it)."""
    from tsfm.export.onnx_export import export_suite

    spec = json.loads((suite_dir / "mini" / hub.SUITE_FILE).read_text())
    spec["by_frequency"] = {"M": {"mini-64": "mini-16"}}
    spec["calibration_windows"] = 2
    spec["seasonal_adjustment"] = True
    (suite_dir / "mini" / hub.SUITE_FILE).write_text(json.dumps(spec))
    out = tmp_path_factory.mktemp("edge") / "mini-edge"
    monkeypatch.chdir(out.parent.parent)
    given = Path(out.parent.name) / out.name
    lines: list[str] = []
    export_suite("mini", given, log=lines.append)
    wrote = [line.split(" (")[0] for line in lines if line.startswith("wrote ")]
    assert wrote == [f"wrote {given / 'mini-64.onnx'}", f"wrote {given / 'mini-16.onnx'}", f"wrote {given}/"], lines
    return out


def test_an_export_replaces_an_earlier_export_but_no_other_folder(exported_suite) -> None:
    from tsfm.errors import InputError
    from tsfm.export.onnx_export import export_suite

    export_suite("mini", exported_suite)
    assert sorted(p.name for p in exported_suite.iterdir()) == ["mini-16.onnx", "mini-64.onnx", "suite.json"]
    (exported_suite / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="is a folder that is not an exported suite"):
        export_suite("mini", exported_suite)
    assert (exported_suite / "notes.txt").read_text() == "mine" and (exported_suite / "mini-16.onnx").exists()


def test_an_exported_suite_chooses_and_forecasts_as_the_suite(exported_suite, one_torch_thread) -> None:
    """The folder holds one file per checkpoint; the runtime and the Forecaster on the folder choose the
    checkpoint the suite chooses and give its forecasts, calibrated by the same backtests."""
    import tsfm_runtime
    from tsfm import Forecaster

    assert sorted(p.name for p in exported_suite.iterdir()) == ["mini-16.onnx", "mini-64.onnx", "suite.json"]
    edge = tsfm_runtime.load(exported_suite)
    suite = hub.load_suite("mini")
    seasonal = positive_frame("QS", length=60)  # two adjusted series, one raw
    for freq, df in (("D", frame(30, "D", 3)), ("D", frame(60, "D", 3)), ("MS", frame(60, "MS", 3)),
                     ("W", frame(30, "W", 3)), ("QS", seasonal)):
        levels = tuple(edge.quantiles)
        want = Forecaster(model="mini", horizon=12, quantiles=levels).fit(df)
        got = Forecaster(model=str(exported_suite), horizon=12, quantiles=levels).fit(df)
        info = want.series_.freq_info
        assert want.plan_.calibration_windows == got.plan_.calibration_windows == 2
        assert want.plan_.seasonal_adjustment and got.plan_.seasonal_adjustment
        assert got.model_name_ == str(exported_suite / f"{want.model_name_}.onnx")
        assert want.model_name_ == suite.select(want.history_length_, info.season, info.name)
        cols = ["mean", *map(str, levels)]
        np.testing.assert_allclose(got.predict()[cols].to_numpy(), want.predict()[cols].to_numpy(),
                                   rtol=1e-4, atol=1e-4)
        values = np.stack([g["y"].to_numpy() for _, g in df.groupby("unique_id")])
        assert edge.chosen(values, freq=freq) == want.model_name_
        if df is seasonal:  # the adjustment is in play: without it the forecast differs
            off = Forecaster(model="mini", horizon=12, quantiles=levels, seasonal_adjustment=False).fit(df)
            assert not np.allclose(off.predict()[cols].to_numpy(), want.predict()[cols].to_numpy(), rtol=1e-3)
        direct = edge.predict(values, freq=freq, horizon=12)  # [3, 12, 1, Q]
        np.testing.assert_allclose(direct[:, :, 0].reshape(-1, len(levels)), want.predict()[list(map(str, levels))],
                                   rtol=1e-4, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty batch is answered quietly, as a single checkpoint answers it
        assert edge.predict(np.zeros((0, 30)), freq="D", horizon=12).shape == (0, 12, 1, len(edge.quantiles))


def monthly_steps(length: int, n_series: int = 3) -> pd.DataFrame:
    """Monthly-seasonal series whose time column holds step numbers, not dates."""
    rng = np.random.default_rng(1)
    t = np.arange(length)
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "t": t + 1,
                                    "y": 20 + 5 * np.sin(2 * np.pi * t / 12 + i) + rng.normal(0, 0.5, length)})
                      for i in range(n_series)])


def test_integer_steps_are_served_as_the_resolution_their_seasons_suggest(exported_suite, one_torch_thread) -> None:
    """Without dates or --freq the suite reads the steps as monthly from their seasons: it picks the
    monthly specialist (`mini-16` here) where the unknown resolution got the long-history variant, the
    horizon stays the steps' own, and the exported suite chooses and forecasts the same from arrays."""
    import tsfm_runtime
    from tsfm import Forecaster

    df = monthly_steps(60)
    fitted = Forecaster(model="mini", time_col="t").fit(df)
    assert fitted.series_.inferred == "MS" and fitted.model_name_ == "mini-16" and fitted.horizon_ == 14
    assert "integer steps read as MS from their seasons" in fitted.plan_.reason
    short = df.groupby("unique_id").tail(20)  # too short to show a season: read with the fitted resolution
    monthly = Forecaster(model="mini", time_col="t", freq="MS", horizon=14).fit(short)
    np.testing.assert_allclose(fitted.predict(short)["mean"], monthly.predict()["mean"])
    told = Forecaster(model="mini", time_col="t", freq="D").fit(df)  # the user's word wins
    assert told.series_.inferred is None and told.model_name_ == "mini-64" and told.horizon_ == 14
    edge = tsfm_runtime.load(exported_suite)
    values = np.stack([g["y"].to_numpy() for _, g in df.groupby("unique_id")])
    assert edge.chosen(values) == "mini-16" and edge.chosen(values, freq="D") == "mini-64"
    levels = tuple(edge.quantiles)
    want = Forecaster(model="mini", time_col="t", horizon=12, quantiles=levels).fit(df).predict()
    np.testing.assert_allclose(edge.predict(values, horizon=12)[:, :, 0].reshape(-1, len(levels)),
                               want[list(map(str, levels))], rtol=1e-4, atol=1e-4)


def test_cli_exports_a_suite_to_a_folder_only(suite_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from tsfm.cli.main import app

    runner = CliRunner()
    bad = runner.invoke(app, ["export", "--model", "mini", "-o", str(tmp_path / "mini.onnx")])
    assert bad.exit_code == 2 and "exports to a folder" in bad.stderr and not (tmp_path / "mini.onnx").exists()
    cut = runner.invoke(app, ["export", "--model", "mini", "--horizon", "4", "-o", str(tmp_path / "x")])
    assert cut.exit_code == 2 and not (tmp_path / "x").exists()
    ok = runner.invoke(app, ["export", "--model", "mini", "-o", str(tmp_path / "edge")])
    assert ok.exit_code == 0, ok.stderr
    assert (tmp_path / "edge" / "suite.json").is_file() and "tsfm_runtime.load" in ok.stderr
