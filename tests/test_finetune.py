"""Few-shot fine-tuning: validation split in time, modes, best/zero-shot selection, covariates, CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import monthly_frame
from tsfm import Forecaster
from tsfm.data.loading import load_series
from tsfm.data.sampling import collate_windows
from tsfm.errors import InputError
from tsfm.hub import load_model
from tsfm.train.finetune import (
    KeepBestWeights,
    SeriesWindows,
    _validation_loss,
    finetune_model,
    plan_windows,
    resolve_mode,
    with_covariates,
)
from tsfm.train.module import ForecastingTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seasonal_frame(n_series: int = 3, length: int = 240, seed: int = 0) -> pd.DataFrame:
    """Hourly series with a daily cycle and level shifts: the random tiny TTM forecasts them badly."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        t = np.arange(length)
        y = 50 + 10 * i + 8 * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 0.5, length)
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2021-01-01", periods=length, freq="h"),
                                   "y": y}))
    return pd.concat(parts, ignore_index=True)


def covariate_frame(n_series: int = 2, length: int = 300, seed: int = 1) -> pd.DataFrame:
    """y_t = 3 x_t + noise with x random and known ahead: only a model that reads x can forecast y."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n_series):
        x = rng.normal(size=length)
        y = 20 + 3 * x + rng.normal(0, 0.3, length)
        parts.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2021-01-01", periods=length, freq="h"),
                                   "y": y, "x": x}))
    return pd.concat(parts, ignore_index=True)


def split_future(df: pd.DataFrame, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    tail = df.groupby("unique_id").tail(h)
    return df.drop(tail.index), tail


# ----------------------------------------------------------------------------- window plan


def test_plan_windows_is_time_ordered_and_few_shot():
    lengths = [200, 120]
    train, val, v = plan_windows(lengths, loss_steps=10, val_size=30, fraction=0.25)
    assert v == 30
    for i, length in enumerate(lengths):
        t_train = train.origins[train.series == i]
        t_val = val.origins[val.series == i]
        # training targets end before the held-out tail; validation targets lie inside it
        assert t_train.max() + 10 <= length - 30 and (train.ends[train.series == i] == length - 30).all()
        assert t_val.min() == length - 30 and t_val.max() == length - 10 and len(t_val) == 21
        # few-shot: the last quarter of the candidate origins, consecutive
        candidates = length - 30 - 10 - 8 + 1
        assert len(t_train) == int(np.ceil(0.25 * candidates))
        assert t_train.max() == length - 40 and (np.diff(t_train) == 1).all()


def test_plan_windows_rejects_series_too_short():
    with pytest.raises(InputError, match="too short to fine-tune"):
        plan_windows([20, 25], loss_steps=10, val_size=None, fraction=0.5)


def test_windows_hide_targets_beyond_end_and_horizon():
    values = [np.arange(100, dtype=np.float32)[:, None]]
    train, _, _ = plan_windows([100], loss_steps=4, val_size=10, fraction=1.0)
    ds = SeriesWindows(values, train, context_length=16, prediction_length=8, loss_steps=4, freq_id=3)
    last = ds[len(ds) - 1]
    t = int(train.origins[-1])
    np.testing.assert_array_equal(last["past_values"][:, 0], np.arange(t - 16, t))
    np.testing.assert_array_equal(last["future_mask"][:, 0], [1, 1, 1, 1, 0, 0, 0, 0])
    assert np.nanmax(last["future_values"]) < 100 - 10  # never a held-out point
    first = ds[0] if train.origins[0] < 16 else None
    if first is not None:  # short contexts are left-padded and masked
        assert first["past_mask"][: 16 - int(train.origins[0])].sum() == 0


# ----------------------------------------------------------------------------- training and selection


def remeasured_loss(tuned, series, fraction: float) -> float:
    """The validation loss of ``tuned`` on the tiny checkpoint's validation windows (horizon 12)."""
    _, val, _ = plan_windows(series.lengths.tolist(), 12, None, fraction)
    loader = DataLoader(SeriesWindows(series.values, val, 64, 16, 12, series.freq_info.token), batch_size=256,
                        collate_fn=collate_windows)
    task = ForecastingTask(model=tuned.config.to_dict())
    task.model = tuned
    return _validation_loss(task, loader, "cpu")


def test_finetune_reduces_validation_loss_and_restores_best(tiny_checkpoint):
    series = load_series(seasonal_frame())
    model = load_model(tiny_checkpoint)
    tuned, report = finetune_model(model, series, horizon=12, fraction=0.5, max_epochs=15, patience=3,
                                   progress=False)
    assert report.kept == "fine-tuned" and tuned is not model
    assert report.val_loss_best < 0.8 * report.val_loss_before
    # the returned weights are the best epoch's: re-measuring gives exactly the recorded best loss
    assert remeasured_loss(tuned, series, fraction=0.5) == pytest.approx(report.val_loss_best, rel=1e-6)
    assert not any(p.requires_grad is False for p in tuned.parameters())


def test_step_limit_inside_the_first_epoch_still_validates(tiny_checkpoint):
    series = load_series(seasonal_frame(3, length=400))
    _, report = finetune_model(load_model(tiny_checkpoint), series, horizon=12, fraction=1.0, max_steps=2,
                               batch_size=32, progress=False)
    assert report.steps == 2 and report.epochs == 1 and report.windows_seen == 64
    assert np.isfinite(report.val_loss_best) and report.train_windows > 64


def test_steps_after_the_last_validation_are_validated_too(tiny_checkpoint):
    """40 steps of 34-batch epochs: validated at step 34 and again at 40, so the last 6 steps can be kept;
    re-measuring the returned weights gives the recorded best loss."""
    series = load_series(seasonal_frame(3, length=400))
    tuned, report = finetune_model(load_model(tiny_checkpoint), series, horizon=12, fraction=1.0, max_steps=40,
                                   batch_size=32, progress=False)
    assert report.train_windows == 1071 and report.steps == 40 and report.epochs == 2
    assert report.best_epoch == 1 and report.kept == "fine-tuned"
    assert remeasured_loss(tuned, series, fraction=1.0) == pytest.approx(report.val_loss_best, rel=1e-6)


@pytest.mark.parametrize("step", ["validation_step", "training_step"])
def test_ctrl_c_in_any_lightning_loop_reaches_the_caller_as_keyboard_interrupt(tiny_checkpoint, monkeypatch, step):
    """Lightning turns Ctrl-C into exit(1); the CLI must see the interrupt to say so and exit 130."""
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ForecastingTask, step, pressed)
    series = load_series(seasonal_frame())
    with pytest.raises(KeyboardInterrupt):
        finetune_model(load_model(tiny_checkpoint), series, horizon=12, fraction=0.5, max_steps=2, progress=False)


def test_keep_best_weights_tracks_lowest_validation_loss():
    class Trainer:
        sanity_checking = False
        current_epoch = global_step = 0
        callback_metrics: dict = {}

    module = ForecastingTask(model={"family": "ttm", "context_length": 16, "prediction_length": 4,
                                    "patch_length": 8, "d_model": 8, "num_layers": 1, "adaptive_patching_levels": 1,
                                    "decoder_d_model": 8, "decoder_num_layers": 1})
    keep, trainer = KeepBestWeights(), Trainer()
    snapshots = []
    for epoch, loss in enumerate([3.0, 1.0, 2.0]):
        with torch.no_grad():
            module.model.head.proj.bias.fill_(float(epoch))
        snapshots.append(module.model.head.proj.bias.clone())
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_loss": torch.tensor(loss)}
        trainer.global_step = 10 * (epoch + 1)
        keep.on_validation_end(trainer, module)
    assert keep.best == 1.0 and keep.epoch == 1 and keep.validated_step == 30
    torch.testing.assert_close(keep.state["head.proj.bias"], snapshots[1], rtol=0, atol=0)


def test_head_mode_leaves_backbone_bit_identical(tiny_checkpoint):
    series = load_series(seasonal_frame(2))
    model = load_model(tiny_checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuned, report = finetune_model(model, series, horizon=12, fraction=0.3, max_epochs=2, progress=False)
    assert report.kept == "fine-tuned" and report.frozen_parameters > 0
    after = tuned.state_dict()
    frozen = [k for k in before if k.startswith(("embedding.", "backbone."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(("decoder.", "head.")))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input model untouched


def test_full_mode_trains_everything_and_unknown_mode_fails(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    assert resolve_mode(model, "full") == ("full", ("",))
    assert resolve_mode(model, "decoder")[1] == resolve_mode(model, "head")[1]
    with pytest.raises(InputError, match="unknown fine-tuning mode"):
        resolve_mode(model, "adapter")
    from tsfm.models.itransformer import ITransformer, ITransformerConfig

    headless = ITransformer(ITransformerConfig.tiny())  # a family without a separately pretrained head
    assert resolve_mode(headless, "head") == ("full", ("",))


def test_zero_shot_weights_kept_when_finetuning_hurts(tiny_checkpoint):
    series = load_series(seasonal_frame(2))
    model = load_model(tiny_checkpoint)
    kept, report = finetune_model(model, series, horizon=12, fraction=0.2, mode="full", learning_rate=50.0,
                                  max_epochs=2, patience=1, progress=False)
    assert report.kept == "zero-shot" and kept is model
    assert not report.val_loss_best < report.val_loss_before


def test_forecaster_finetune_save_and_load(tiny_checkpoint, tmp_path):
    df = seasonal_frame(2)
    f = Forecaster(model=str(tiny_checkpoint), horizon=12).finetune(df, fraction=0.5, max_epochs=3, progress=False)
    assert f.finetune_report_.kept == "fine-tuned"
    fc = f.predict()
    zero = Forecaster(model=str(tiny_checkpoint), horizon=12).fit(df).predict()
    assert not np.allclose(fc["0.5"], zero["0.5"])
    out = f.save(tmp_path / "tuned")
    assert "fine-tuned checkpoint" in (out / "README.md").read_text()
    again = Forecaster(model=str(out), horizon=12).fit(df).predict()
    pd.testing.assert_frame_equal(again, fc)
    pd.testing.assert_frame_equal(Forecaster.load(out).fit(df).predict(), fc)


# ----------------------------------------------------------------------------- covariates


def test_covariate_model_starts_as_the_zero_shot_model(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    exog_model, load = with_covariates(model, n_targets=1, n_past=1, n_future=1)
    cfg = exog_model.config
    assert (cfg.num_exog_channels, cfg.enable_exog_mixer, cfg.decoder_mode, cfg.num_input_channels) == (
        2, True, "mix_channel", 3)
    assert load["unexpected_keys"] == [] and load["mismatched_keys"] == []
    new_modules = [k for k in load["missing_keys"] if "channel_mixer" in k or k.startswith("exog_mixer")]
    assert load["missing_keys"] and new_modules == load["missing_keys"]
    g = torch.Generator().manual_seed(0)
    past = torch.randn(4, 64, 1, generator=g) * 5 + 10
    past_exog, future_exog = torch.randn(4, 64, 2, generator=g), torch.randn(4, 16, 2, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(exog_model.eval()(past, past_exog=past_exog, future_exog=future_exog),
                                   model(past), rtol=1e-5, atol=1e-5)


def test_variate_token_families_take_past_covariates_without_new_weights():
    """iTransformer / Moirai-MoE read covariates as extra tokens: same weights, the count recorded;
    known-future covariates are refused in one line; a family without covariates says so."""
    from tsfm.models.itransformer import ITransformer, ITransformerConfig
    from tsfm.models.moirai_moe import MoiraiMoE, MoiraiMoEConfig
    from tsfm.models.spacetime import SpaceTime, SpaceTimeConfig

    for model in (ITransformer(ITransformerConfig.tiny()), MoiraiMoE(MoiraiMoEConfig.tiny())):
        exog_model, load = with_covariates(model, n_targets=1, n_past=2, n_future=0)
        assert exog_model.config.num_exog_channels == 2 and not any(load.values())
        for key, value in model.state_dict().items():
            assert torch.equal(exog_model.state_dict()[key], value)
        with pytest.raises(InputError, match="known-future"):
            with_covariates(model, n_targets=1, n_past=0, n_future=1)
    with pytest.raises(InputError, match="does not take covariates"):
        with_covariates(SpaceTime(SpaceTimeConfig.tiny()), n_targets=1, n_past=1, n_future=0)


def test_known_future_covariate_halves_the_error(tiny_checkpoint):
    h = 16
    history, future = split_future(covariate_frame(), h)
    x_future = future[["unique_id", "ds", "x"]]
    settings = dict(fraction=1.0, max_epochs=12, patience=4, progress=False)
    with_x = Forecaster(model=str(tiny_checkpoint), horizon=h, future_exog=["x"]).finetune(
        history, X_future=x_future, **settings)
    without = Forecaster(model=str(tiny_checkpoint), horizon=h).finetune(history[["unique_id", "ds", "y"]], **settings)
    forecast = with_x.predict()  # the X_future given to finetune
    pd.testing.assert_frame_equal(forecast, with_x.predict(X_future=x_future))
    err_with = np.abs(forecast["0.5"].to_numpy() - future["y"].to_numpy()).mean()
    err_without = np.abs(without.predict()["0.5"].to_numpy() - future["y"].to_numpy()).mean()
    assert with_x.finetune_report_.kept == "fine-tuned"
    assert with_x.finetune_report_.missing_keys  # the exogenous mixer and channel mixers were added
    assert err_with <= 0.5 * err_without, (err_with, err_without)


def test_future_covariates_missing_or_misaligned_raise(tiny_checkpoint, tmp_path):
    h = 8
    history, future = split_future(covariate_frame(length=120), h)
    f = Forecaster(model=str(tiny_checkpoint), horizon=h, future_exog=["x"]).finetune(
        history, fraction=1.0, max_epochs=3, progress=False)
    assert f.finetune_report_.kept == "fine-tuned"
    with pytest.raises(InputError, match="known-future covariates"):
        f.predict()
    shifted = future[["unique_id", "ds", "x"]].copy()
    shifted["ds"] = shifted["ds"] + pd.Timedelta(hours=1)
    with pytest.raises(InputError, match="must cover the next 8 steps"):
        f.predict(X_future=shifted)
    with pytest.raises(InputError, match="must cover the next 8 steps"):
        f.predict(X_future=future[["unique_id", "ds", "x"]].iloc[1:])
    with pytest.raises(InputError, match="must cover the next"):
        Forecaster(model=str(tiny_checkpoint), horizon=h, future_exog=["x"]).finetune(
            history, fraction=1.0, max_epochs=1, progress=False, X_future=shifted)
    # rows outside the horizon are ignored (AutoGluon's known_covariates may run past it, or hold the past)
    exact = f.predict(X_future=future[["unique_id", "ds", "x"]])
    later = future.assign(ds=future["ds"] + pd.Timedelta(hours=h), x=-99.0)
    wider = pd.concat([later, history.groupby("unique_id").tail(3), future])[["unique_id", "ds", "x"]]
    pd.testing.assert_frame_equal(f.predict(X_future=wider), exact)
    with pytest.raises(InputError, match="needs a row at each of its 8 steps"):
        f.predict(X_future=wider.drop(index=future.index[:1]))
    # a backtest reads the known-future values after the cutoff from the frame itself
    full = pd.concat([history, future]).sort_values(["unique_id", "ds"])
    cv = f.cross_validation(full, h=h, n_windows=1)
    np.testing.assert_allclose(cv["0.5"].to_numpy(), f.predict(X_future=future[["unique_id", "ds", "x"]])["0.5"],
                               rtol=1e-6)
    # a saved covariate model remembers its columns and still needs their future values
    out = f.save(tmp_path / "exog")
    g = Forecaster(model=str(out), horizon=h).fit(history)
    pd.testing.assert_frame_equal(g.predict(X_future=future[["unique_id", "ds", "x"]]),
                                  f.predict(X_future=future[["unique_id", "ds", "x"]]))
    with pytest.raises(InputError, match="covariate"):
        Forecaster(model=str(out), horizon=h, future_exog=[]).fit(history).predict()

    # GluonTS' test inputs carry the known future in feat_dynamic_real, past the truncated target
    from gluonts.dataset.common import ListDataset

    entries = [{"start": pd.Period(rows.ds.iloc[0], "h"), "item_id": uid, "target": rows.y.to_numpy()[:-h],
                "feat_dynamic_real": rows.x.to_numpy()[None]} for uid, rows in full.groupby("unique_id", sort=False)]
    forecasts = list(f.to_gluonts_predictor().predict(ListDataset(entries, freq="h")))
    expected = f.predict(X_future=future[["unique_id", "ds", "x"]])
    for fc, (_, rows) in zip(forecasts, expected.groupby("unique_id", sort=False)):
        np.testing.assert_allclose(fc.quantile(0.5), rows["0.5"].to_numpy(), rtol=1e-5)
    other_future = [{**e, "feat_dynamic_real": np.concatenate([e["feat_dynamic_real"][:, :-h],
                                                                -e["feat_dynamic_real"][:, -h:]], axis=1)}
                    for e in entries]
    moved = next(f.to_gluonts_predictor().predict(ListDataset(other_future, freq="h")))
    assert np.abs(moved.quantile(0.5) - forecasts[0].quantile(0.5)).max() > 1e-3  # the known future is read
    history_only = [{**e, "feat_dynamic_real": e["feat_dynamic_real"][:, :-h]} for e in entries]
    with pytest.raises(InputError, match=f"feat_dynamic_real must run {h} steps past its target"):
        list(f.to_gluonts_predictor().predict(ListDataset(history_only, freq="h")))


def test_a_finetuned_folder_forecasts_with_the_settings_it_was_trained_with(tiny_checkpoint, tmp_path):
    """``Forecaster(model=DIR)`` (what ``tsfm forecast --model DIR`` builds) reads the context length
    and horizon it was tuned for, as ``Forecaster.load`` does; other covariate columns than those it
    was tuned with are refused; a fine-tune that kept the zero-shot weights asks for no covariates."""
    df = seasonal_frame(2)
    f = Forecaster(model=str(tiny_checkpoint), horizon=8, context_length=24).finetune(
        df, fraction=1.0, max_epochs=2, progress=False)
    out = f.save(tmp_path / "short")
    by_folder = Forecaster(model=str(out)).fit(df).predict()
    pd.testing.assert_frame_equal(by_folder, Forecaster.load(out).predict())
    pd.testing.assert_frame_equal(by_folder, f.predict())
    assert Forecaster(model=str(out), horizon=8).get_params()["context_length"] is None  # stored as given

    history, _ = split_future(covariate_frame(length=120), 8)
    g = Forecaster(model=str(tiny_checkpoint), horizon=8, past_exog=["x"]).finetune(
        history, fraction=1.0, max_epochs=2, progress=False)
    tuned = g.save(tmp_path / "exog")
    with pytest.raises(InputError, match="fine-tuned with the past_exog covariates 'x', not 'y2'"):
        Forecaster(model=str(tuned), horizon=8, past_exog=["y2"]).fit(history.assign(y2=1.0))
    kept = Forecaster(model=str(tiny_checkpoint), horizon=8, past_exog=["x"]).finetune(
        history, fraction=1.0, max_steps=1, learning_rate=1e-12, progress=False)
    assert kept.finetune_report_.kept == "zero-shot"
    saved = json.loads((kept.save(tmp_path / "kept") / "forecaster.json").read_text())
    assert saved["past_exog"] is None and saved["future_exog"] is None
    assert len(Forecaster(model=str(tmp_path / "kept"), horizon=8).fit(history.drop(columns="x")).predict()) == 16
    air = monthly_frame(1, length=120)  # kept zero-shot weights forecast exactly as the zero-shot suite
    same = Forecaster(horizon=12).finetune(air, max_steps=1, learning_rate=1e-12, progress=False)
    assert same.finetune_report_.kept == "zero-shot"
    pd.testing.assert_frame_equal(same.predict(), Forecaster(horizon=12).fit(air).predict())


# ----------------------------------------------------------------------------- CLI


def test_cli_finetune_writes_a_loadable_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    import tsfm.train.numerics
    from tsfm.cli.finetune_cmd import finetune

    flushed = []  # recorded, not set: flushing would change this test process for the tests after it
    monkeypatch.setattr(tsfm.train.numerics, "flush_denormals", lambda: flushed.append(True))

    app = typer.Typer()
    app.command()(finetune)
    app.command("noop")(lambda: None)  # two commands: typer keeps the subcommand name
    csv = tmp_path / "data.csv"
    seasonal_frame(2).to_csv(csv, index=False)
    out = tmp_path / "tuned"
    runner = CliRunner()
    args = ["finetune", str(csv), "--model", str(tiny_checkpoint), "--output-dir", str(out), "-H", "12",
            "--fraction", "0.5", "--max-epochs", "2", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # stdout is for data only
    assert "validation loss" in result.stderr and "saved checkpoint" in result.stderr
    report = json.loads((out / "finetune.json").read_text())
    assert report["mode"] == "head" and report["train_windows"] > 0
    assert flushed  # the command owns its process: denormals are flushed before torch starts its threads
    from tsfm.atomic import umask

    assert (out.stat().st_mode & 0o777, (out / "model.safetensors").stat().st_mode & 0o777) == \
        (0o777 & ~umask(), 0o666 & ~umask())  # not private: mkdtemp and safetensors would make them so
    assert len(Forecaster(model=str(out), horizon=12).fit(csv).predict()) == 2 * 12
    from tsfm.cli.main import app as tsfm_app

    served = runner.invoke(tsfm_app, ["forecast", str(csv), "--model", str(out)])  # as the hint below says
    assert served.exit_code == 0 and "horizon 12 (the horizon the model was saved with)" in served.stderr
    assert len(pd.read_csv(io.StringIO(served.stdout))) == 2 * 12  # not the hourly default of 24
    piped = runner.invoke(app, ["finetune", "-", *args[2:3], str(tiny_checkpoint), "--output-dir",
                                str(tmp_path / "piped"), *args[6:]], input=csv.read_text())  # '-': stdin
    assert piped.exit_code == 0 and "tsfm forecast DATA.csv --model" in piped.stderr, piped.stderr
    assert json.loads((tmp_path / "piped" / "finetune.json").read_text())["train_windows"] == report["train_windows"]
    garbled = runner.invoke(app, ["finetune", "-", "--output-dir", str(tmp_path / "never")], input="a,b\nx,y\n")
    assert garbled.exit_code == 2 and len(garbled.stderr.strip().splitlines()) == 1
    assert "tsfm-stdin" not in garbled.stderr and not (tmp_path / "never").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.stderr
    bad = runner.invoke(app, [*args[:-1], "--overwrite", "--mode", "lora"])
    assert bad.exit_code == 2 and "unknown fine-tuning mode" in bad.stderr
    assert (out / "finetune.json").is_file()  # a failed run leaves the old checkpoint in place


def test_cli_finetune_never_replaces_a_folder_it_did_not_write(tiny_checkpoint, tmp_path, monkeypatch):
    """``--overwrite`` replaces a checkpoint folder only: not the current folder, not the folder of the
    input, not a folder of other files; an output under a file is refused before training."""
    import typer
    from typer.testing import CliRunner

    import tsfm.train.numerics
    from tsfm.cli.finetune_cmd import finetune

    monkeypatch.setattr(tsfm.train.numerics, "flush_denormals", lambda: None)  # this process is pytest's
    app = typer.Typer()
    app.command()(finetune)
    app.command("noop")(lambda: None)
    project, work = tmp_path / "project", tmp_path / "work"
    project.mkdir()
    work.mkdir()
    csv = project / "data.csv"
    seasonal_frame(2).to_csv(csv, index=False)
    (project / "notes.txt").write_text("keep")
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(work)
    runner = CliRunner()
    base = ["finetune", str(csv), "--model", str(tiny_checkpoint), "--max-steps", "1", "--quiet", "--overwrite"]
    for out, why in ((".", "current folder"), (str(project), "holds the input file"),
                     (str(tmp_path), "current folder"), (str(tmp_path / "afile" / "sub"), "is a file")):
        result = runner.invoke(app, [*base, "--output-dir", out])
        assert result.exit_code == 2 and why in result.stderr, (out, result.stderr)
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    (other / "config.json").write_text("{}")  # a project's own config is no checkpoint
    result = runner.invoke(app, [*base, "--output-dir", str(other)])
    assert result.exit_code == 2 and "not a checkpoint folder" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["data.csv", "notes.txt"]
    assert (other / "mine.txt").read_text() == "keep"
    (work / "dangling").symlink_to(tmp_path / "made")  # a link is followed, as `forecast -o` follows one
    result = runner.invoke(app, [*base, "--output-dir", "dangling"])
    assert result.exit_code == 0 and (tmp_path / "made" / "model.safetensors").is_file(), result.stderr
    result = runner.invoke(app, [*base, "--output-dir", "dangling"])  # through the link, over its checkpoint
    assert result.exit_code == 0 and (work / "dangling").is_symlink(), result.stderr


def test_cli_forecast_with_future_covariates(tiny_checkpoint, tmp_path):
    """`tsfm forecast --model DIR --future FILE` feeds known-future values to a covariate model."""
    from typer.testing import CliRunner

    from tsfm.cli.main import app

    h = 8
    history, future = split_future(covariate_frame(length=120), h)
    f = Forecaster(model=str(tiny_checkpoint), horizon=h, future_exog=["x"]).finetune(
        history, fraction=1.0, max_epochs=2, progress=False)
    model_dir = f.save(tmp_path / "exog")
    data, fut, out = tmp_path / "data.csv", tmp_path / "future.csv", tmp_path / "out.csv"
    history.to_csv(data, index=False)
    future[["unique_id", "ds", "x"]].to_csv(fut, index=False)
    runner = CliRunner()
    ok = runner.invoke(app, ["forecast", str(data), "--model", str(model_dir), "--horizon", str(h),
                             "--future", str(fut), "-o", str(out)])
    assert ok.exit_code == 0 and "settings are ignored" not in ok.stderr, ok.stderr
    got = pd.read_csv(out)
    want = f.predict(X_future=future[["unique_id", "ds", "x"]])
    np.testing.assert_allclose(got["0.5"], want["0.5"], rtol=1e-5)
    asked = runner.invoke(app, ["forecast", str(data), "--model", str(model_dir), "--horizon", str(h),
                                "--future", str(fut), "--calibration-windows", "3", "-o", str(out)])
    assert asked.exit_code == 0 and "those settings are ignored" in asked.stderr, asked.stderr  # said, not silent
    np.testing.assert_allclose(pd.read_csv(out)["0.5"], want["0.5"], rtol=1e-5)
    missing = runner.invoke(app, ["forecast", str(data), "--model", str(model_dir), "--horizon", str(h),
                                  "-o", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.csv").exists()


def test_the_plotted_band_of_a_covariate_model_reads_the_known_future_of_the_series_drawn(tiny_checkpoint):
    """``predict_band`` (what ``--plot`` draws) on fewer series than were fitted gives those series'
    forecasts from their own known-future values."""
    h = 8
    history, future = split_future(covariate_frame(n_series=3, length=120), h)
    f = Forecaster(model=str(tiny_checkpoint), horizon=h, future_exog=["x"]).finetune(
        history, fraction=1.0, max_epochs=1, progress=False)
    want = f.predict(X_future=future[["unique_id", "ds", "x"]])
    band = f.predict_band(max_series=2)
    assert band["unique_id"].unique().tolist() == ["s0", "s1"]
    np.testing.assert_allclose(band["0.5"], want[want["unique_id"] != "s2"]["0.5"], rtol=1e-5)


def test_a_covariate_finetune_is_reproducible(tiny_checkpoint):
    """The covariate modules a fine-tune adds are initialised from its seed, not the global RNG state."""
    import torch

    history, _ = split_future(covariate_frame(length=120), 8)
    runs = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever ran before
        f = Forecaster(model=str(tiny_checkpoint), horizon=8, past_exog=["x"]).finetune(
            history, fraction=1.0, max_epochs=1, progress=False)
        runs.append({k: v.clone() for k, v in f.model_.state_dict().items()})
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("options, message", [
    ({"learning_rate": -1.0}, "learning rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning rate must be a positive number"),
    ({"learning_rate": 0.0}, "learning rate must be a positive number"),
    ({"fraction": "0.1"}, "fraction must be in"),
    ({"max_steps": 1.5}, "max_steps must be a positive integer"),
])
def test_finetune_options_are_checked_before_training(tiny_checkpoint, options, message):
    with pytest.raises(InputError, match=message):
        Forecaster(model=str(tiny_checkpoint), horizon=8).finetune(seasonal_frame(1), progress=False, **options)


def test_a_validation_period_with_no_observed_value_is_refused(tiny_checkpoint):
    df = seasonal_frame(2)
    df.loc[df.groupby("unique_id").tail(40).index, "y"] = np.nan
    with pytest.raises(InputError, match="hold no observed value"):
        Forecaster(model=str(tiny_checkpoint), horizon=8).finetune(df, progress=False)
    with pytest.raises(InputError, match="context_length must be a positive integer"):
        Forecaster(model=str(tiny_checkpoint), horizon=8, context_length=0).fit(df)


def test_known_future_values_are_checked_before_the_training(tiny_checkpoint, monkeypatch):
    import tsfm.train.finetune

    monkeypatch.setattr(tsfm.train.finetune, "finetune_model", lambda *a, **k: pytest.fail("trained before checking"))
    history, future = split_future(covariate_frame(length=120), 8)
    shifted = future[["unique_id", "ds", "x"]].assign(ds=lambda d: d["ds"] + pd.Timedelta(hours=1))
    with pytest.raises(InputError, match="must cover the next"):
        Forecaster(model=str(tiny_checkpoint), horizon=8, future_exog=["x"]).finetune(
            history, progress=False, X_future=shifted)
    with pytest.raises(InputError, match="no future_exog columns are named"):
        Forecaster(model=str(tiny_checkpoint), horizon=8).finetune(history, progress=False, X_future=future)


def test_an_exported_graph_is_refused_for_fine_tuning_and_export(tmp_path):
    from typer.testing import CliRunner

    from tsfm.cli.main import app

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"")
    with pytest.raises(InputError, match="exported graph"):
        Forecaster(model=str(onnx), horizon=8).finetune(seasonal_frame(1), progress=False)
    result = CliRunner().invoke(app, ["export", "--model", str(onnx), "-o", str(tmp_path / "again.onnx")])
    assert result.exit_code == 2 and "already an exported graph" in result.stderr
