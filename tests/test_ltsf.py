"""The LTSF benchmark harness: split arithmetic, train-only statistics, metric, and a few training steps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tsfm.data.ltsf import (
    LTSFData,
    ett_hour_segments,
    mse_mae,
    num_windows,
    ratio_segments,
    read_wide,
    time_features,
    window_borders,
)
from tsfm.train.ltsf import LTSFTask, TrainSettings, fit_and_test, paper_setup


def test_ett_hour_split_is_12_4_4_months_with_lookback_reaching_back():
    segs = ett_hour_segments(17420)
    assert segs == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    # the reference's border1s / border2s for seq_len 96
    assert window_borders(segs["train"], 96, "train") == (0, 8640)
    assert window_borders(segs["val"], 96, "val") == (8640 - 96, 11520)
    assert window_borders(segs["test"], 96, "test") == (11520 - 96, 14400)
    # every test origin: 2880 - H + 1 windows, each forecasting rows inside the test segment
    for horizon in (96, 192, 336, 720):
        assert num_windows(window_borders(segs["test"], 96, "test"), 96, horizon) == 2880 - horizon + 1
    assert num_windows(window_borders(segs["train"], 96, "train"), 96, 96) == 8640 - 96 - 96 + 1
    with pytest.raises(Exception):
        ett_hour_segments(14399)


def test_ratio_split_is_dataset_custom_7_1_2():
    segs = ratio_segments(7588)  # exchange_rate
    assert segs == {"train": (0, 5311), "val": (5311, 6071), "test": (6071, 7588)}
    assert window_borders(segs["test"], 96, "test") == (6071 - 96, 7588)


def _frame(rows: int = 400, channels: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    cols = {f"s{c}": 10 * c + np.sin(2 * np.pi * t / 24 + c) + 0.1 * rng.standard_normal(rows) + 0.01 * t
            for c in range(channels)}
    return pd.DataFrame(cols, index=pd.date_range("2020-01-01", periods=rows, freq="h"))


def test_normalisation_uses_training_rows_only():
    frame = _frame()
    data = LTSFData.from_frame(frame, "ratio")
    end = data.segments["train"][1]
    assert end == 280
    raw = frame.to_numpy()
    np.testing.assert_allclose(data.mean, raw[:end].mean(axis=0))
    np.testing.assert_allclose(data.std, raw[:end].std(axis=0))
    np.testing.assert_allclose(data.values[:end].mean(axis=0), 0.0, atol=1e-5)
    # changing validation / test rows leaves the statistics alone
    changed = frame.copy()
    changed.iloc[end:] *= 100.0
    again = LTSFData.from_frame(changed, "ratio")
    np.testing.assert_allclose(again.mean, data.mean)
    np.testing.assert_allclose(again.values[:end], data.values[:end])


def test_windows_line_up_with_rows():
    data = LTSFData.from_frame(_frame(), "ratio")
    test = data.windows("test", lookback=24, horizon=8)
    assert len(test) == 80 - 8 + 1  # int(0.2 * 400) test rows
    first, last = test[0], test[len(test) - 1]
    assert first["past_values"].shape == (24, 3) and first["future_values"].shape == (8, 3)
    assert first["past_exog"].shape == (24, 4)
    start = data.segments["test"][0]
    np.testing.assert_array_equal(first["future_values"].numpy(), data.values[start:start + 8])
    np.testing.assert_array_equal(last["future_values"].numpy(), data.values[400 - 8:400])
    assert len(data.windows("test", 24, 8, stride=16)) == len(range(0, 73, 16))


def test_metric_on_a_hand_checkable_example():
    pred = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    target = np.array([[[0.0, 2.0], [1.0, 8.0]]])
    # errors 1, 0, 2, -4: MSE (1 + 0 + 4 + 16) / 4, MAE (1 + 0 + 2 + 4) / 4
    assert mse_mae(pred, target) == pytest.approx((21 / 4, 7 / 4))


def test_read_wide_keeps_file_order(tmp_path):
    long = pd.DataFrame({
        "unique_id": ["b"] * 3 + ["a"] * 3,
        "ds": list(pd.date_range("2020-01-01", periods=3, freq="h").astype(str)) * 2,
        "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    })
    path = tmp_path / "x.csv"
    long.to_csv(path, index=False)
    wide = read_wide(path)
    assert list(wide.columns) == ["b", "a"]
    np.testing.assert_array_equal(wide["a"].to_numpy(), [4.0, 5.0, 6.0])
    marks = time_features(wide.index)
    assert marks.shape == (3, 4) and marks.min() >= -0.5 and marks.max() <= 0.5


def test_paper_settings_match_the_reference_scripts():
    setup = paper_setup("itransformer", "etth1", 336)
    assert setup.model["d_model"] == 512 and setup.model["n_heads"] == 8 and setup.train.lr == 1e-4
    assert setup.model["quantiles"] == [0.5] and setup.train.batch_size == 32 and setup.train.patience == 3
    mamba = paper_setup("s-mamba", "etth2", 720)
    assert mamba.model["d_state"] == 2 and mamba.train.lr == 7e-5
    assert paper_setup("s-mamba", "exchange_rate", 96).train.batch_size == 16
    assert paper_setup("itransformer", "exchange_rate", 336).train.epochs == 1
    # SpaceTime: its README's ETTh1/ETTh2 720 command (univariate, lag 336, n_blocks 1, AdamW 1e-3, wd 1e-4)
    st = paper_setup("spacetime", "etth1", 720, lookback=336)
    assert st.model["context_length"] == 336 and st.model["encoder_blocks"] == 1 and st.model["model_dim"] == 128
    assert st.model["kernel_dim"] == 64 and st.model["dropout"] == 0.25 and st.model["quantiles"] == [0.5]
    assert (st.train.optimizer, st.train.weight_decay, st.train.lr, st.train.batch_size) == ("adamw", 1e-4, 1e-3, 50)
    assert st.train.time_features is False
    with pytest.raises(ValueError):
        paper_setup("spacetime", "etth1", 96)  # the paper's README gives horizon 720 only


def test_univariate_target_keeps_one_channel_with_its_own_statistics(tmp_path):
    frame = _frame(channels=3)
    frame.columns = ["X_HUFL", "X_MULL", "X_OT"]
    long = frame.reset_index(names="ds").melt(id_vars="ds", var_name="unique_id", value_name="y")
    long[["unique_id", "ds", "y"]].to_csv(tmp_path / "exchange_rate.csv", index=False)
    full = LTSFData.load("exchange_rate", tmp_path)
    one = LTSFData.load("exchange_rate", tmp_path, target="OT")
    assert one.columns == ["X_OT"] and one.values.shape == (400, 1)
    np.testing.assert_allclose(one.values[:, 0], full.values[:, 2])
    with pytest.raises(Exception):
        LTSFData.load("exchange_rate", tmp_path, target="nope")


@pytest.mark.parametrize("family", ["itransformer", "s-mamba", "spacetime"])
def test_a_few_training_steps_through_the_benchmark_path(family):
    torch.set_num_threads(1)
    data = LTSFData.from_frame(_frame(rows=300), "ratio")
    if family == "spacetime":
        setup = paper_setup(family, "etth1", 720, lookback=32)
        model = {**setup.model, "prediction_length": 8, "model_dim": 16, "kernel_dim": 8, "first_block_kernels": 4,
                 "diff_orders": 2, "ma_windows": [4, 8]}
    else:
        setup = paper_setup(family, "etth2", 96, lookback=32)
        model = {**setup.model, "prediction_length": 8, "d_model": 16, "d_ff": 16}
    if family == "itransformer":
        model["n_heads"] = 2
    settings = TrainSettings(lr=1e-3, batch_size=8, epochs=2, patience=3, seed=0,
                             time_features=setup.train.time_features, optimizer=setup.train.optimizer,
                             weight_decay=setup.train.weight_decay)
    out = fit_and_test(data, model, settings, progress=False, limit_train_batches=3)
    assert out["n_test_windows"] == 60 - 8 + 1
    assert np.isfinite(out["mse"]) and np.isfinite(out["mae"]) and out["mse"] > 0
    assert out["epochs_run"] == 2 and out["best_epoch"] in (1, 2) and len(out["val_mse_per_epoch"]) == 2

    task = LTSFTask(model, time_features=setup.train.time_features)
    batch = {"past_values": torch.zeros(2, 32, 3), "past_exog": torch.zeros(2, 32, 4)}
    assert task.point_forecast(batch).shape == (2, 8, 3)


def test_paper_rows_average_to_the_published_averages():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ltsf import PAPER, PAPER_AVG

    published = {  # issue 29: averages over 96/192/336/720 (MSE, MAE)
        ("itransformer", "etth1"): (0.454, 0.447), ("itransformer", "etth2"): (0.383, 0.407),
        ("itransformer", "exchange_rate"): (0.360, 0.403), ("s-mamba", "etth1"): (0.455, 0.450),
        ("s-mamba", "etth2"): (0.381, 0.405), ("s-mamba", "exchange_rate"): (0.367, 0.408),
    }
    for (model, dataset), (mse, mae) in published.items():
        rows = [PAPER[(model, dataset, h)] for h in (96, 192, 336, 720)]
        assert sum(r[0] for r in rows) / 4 == pytest.approx(mse, abs=6e-4)
        assert sum(r[1] for r in rows) / 4 == pytest.approx(mae, abs=6e-4)
        assert PAPER_AVG[(model, dataset)] == (mse, mae)



def test_render_refreshes_full_shot_paper_numbers_only():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ltsf import PAPER, PAPER_SOURCE, refresh_paper

    run = {"command": "python benchmarks/ltsf.py --model s-mamba", "date": "d"}
    rows = [
        {"model": "s-mamba", "setting": "full-shot", "dataset": "etth1", "horizon": 96, "mse": 0.4, "mae": 0.5,
         "paper_mse": None, "paper_mae": None, "ratio_mse": None, "ratio_mae": None, "source": "old", "run": run},
        {"model": "spacetime", "setting": "full-shot univariate", "dataset": "etth1", "horizon": 720, "mse": 0.1,
         "mae": 0.2, "paper_mse": 9.0, "paper_mae": 9.0, "ratio_mse": 1.0, "ratio_mae": 1.0, "source": "old",
         "run": run},
        {"model": "s-mamba", "setting": "zero-shot", "dataset": "etth1", "horizon": 96, "mse": 0.6, "mae": 0.5,
         "paper_mse": 0.363, "paper_mae": None, "ratio_mse": 0.6 / 0.363, "ratio_mae": None, "source": "ttm",
         "run": run},
    ]
    zero_shot = dict(rows[2])
    out = refresh_paper(rows)
    paper = PAPER[("s-mamba", "etth1", 96)]
    assert (out[0]["paper_mse"], out[0]["paper_mae"]) == paper
    assert out[0]["ratio_mse"] == pytest.approx(0.4 / paper[0]) and out[0]["ratio_mae"] == pytest.approx(0.5 / paper[1])
    assert out[0]["source"] == PAPER_SOURCE["s-mamba"] and out[0]["mse"] == 0.4 and out[0]["run"] is run
    expected = PAPER.get(("spacetime", "etth1", 720), (None, None))  # what PAPER holds, or nothing
    assert (out[1]["paper_mse"], out[1]["paper_mae"]) == expected and out[1]["source"] == PAPER_SOURCE["spacetime"]
    assert out[2] == zero_shot  # other settings keep their own reference

def test_few_shot_keeps_the_last_windows_and_trains_only_the_head():
    torch.set_num_threads(1)
    data = LTSFData.from_frame(_frame(rows=300), "ratio")
    from tsfm.models.itransformer import ITransformer, ITransformerConfig

    config = ITransformerConfig.tiny(context_length=32, prediction_length=8)
    pretrained = ITransformer(config)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    settings = TrainSettings(lr=1e-2, batch_size=4, epochs=1, patience=3, seed=0, lradj="onecycle",
                             optimizer="adamw", weight_decay=0.01, drop_last=False, time_features=False)
    from tsfm.train import ltsf

    seen = {}
    original = ltsf.LTSFTask.on_fit_end if hasattr(ltsf.LTSFTask, "on_fit_end") else None

    def grab(self):
        seen["state"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        seen["starts"] = self.trainer.datamodule.train_set.starts.copy()

    ltsf.LTSFTask.on_fit_end = grab
    try:
        out = fit_and_test(data, config.to_dict(), settings, progress=False, pretrained=pretrained,
                           trainable=("head",), train_fraction=0.05, horizon=8)
    finally:
        if original is None:
            del ltsf.LTSFTask.on_fit_end
        else:
            ltsf.LTSFTask.on_fit_end = original
    n_train = 210 - 32 - 8 + 1  # int(0.7 * 300) training rows
    # granite's few-shot rows: the last int(0.05 * (210 - 32)) + 32 training rows, the windows inside them
    assert out["n_train_windows"] == max(1, int(0.05 * (210 - 32)) + 32 - 32 - 8 + 1)
    assert seen["starts"][-1] == n_train - 1  # the last training windows
    changed = {k for k in before if not torch.equal(before[k], seen["state"][k])}
    assert changed and all(k.startswith("head.") for k in changed)
    assert out["trainable_parameters"] < out["parameters"]


def test_windows_carry_the_resolution_token():
    from tsfm.data.freq import freq_token

    data = LTSFData.from_frame(_frame(), "ratio")
    assert data.freq_id == freq_token("h") != 0
    assert int(data.windows("test", 24, 8)[0]["freq_id"]) == data.freq_id


def test_a_32_step_checkpoint_gets_a_zero_shot_row_rolled_out_to_96(tmp_path):
    """The ttm-96 family forecasts 32 steps per call: the zero-shot path rolls such a checkpoint out to
    horizon 96 through the Forecaster (not skipped), on its own context, and labels the row so."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ltsf import parse_args, record, rolled_out_forecast, zero_shot_rows

    from tsfm.hub import save_pretrained
    from tsfm.models.ttm import TTM, TTMConfig

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = TTM(TTMConfig.tiny(context_length=64, prediction_length=32)).eval()
    save_pretrained(model, tmp_path / "tiny-32")
    long = _frame(rows=600).reset_index(names="ds").melt(id_vars="ds", var_name="unique_id", value_name="y")
    long[["unique_id", "ds", "y"]].to_csv(tmp_path / "exchange_rate.csv", index=False)

    out = tmp_path / "results" / "ltsf.md"
    args = parse_args(["--zero-shot", str(tmp_path / "tiny-32"), "--datasets", "exchange_rate",
                       "--data-dir", str(tmp_path), "--output", str(out)])
    meta = {"command": "test", "date": "d", "git_commit": "c", "machine": "m", "uptime_at_start": "u"}
    rows = zero_shot_rows(args, meta, lambda new: record(out, new))
    assert len(rows) == 1
    row = rows[0]
    assert row["setting"] == "zero-shot rolled out" and row["horizon"] == 96
    assert row["lookback"] == 64 and row["model_context_length"] == 64  # its own context, not --context 512
    assert row["model_prediction_length"] == 32 and row["calls"] == 3
    assert row["n_test_windows"] == 120 - 96 + 1  # every origin of the int(0.2 * 600) test rows
    assert "rolled out to 96" in row["protocol"] and "not 512" in row["protocol"]

    # the row scores the Forecaster's rollout: its first 32 steps are the network's own median, one call
    data = LTSFData.load("exchange_rate", tmp_path)
    windows = data.windows("test", 64, 96)
    median = rolled_out_forecast(str(tmp_path / "tiny-32"), data, windows, 96)
    target = np.stack([w["future_values"].numpy() for w in windows])
    assert median.shape == target.shape == (25, 96, 3) and np.isfinite(median).all()
    with torch.no_grad():
        direct = model(torch.stack([w["past_values"] for w in windows]), None,
                       torch.stack([w["freq_id"] for w in windows]))[..., model.config.median_index]
    np.testing.assert_allclose(median[:, :32], direct.numpy(), atol=1e-5)
    assert (row["mse"], row["mae"]) == pytest.approx(mse_mae(median, target))

    text = out.read_text()
    assert "rolled out: 32-step checkpoints on their own 96-point context" in text
    assert f"| {tmp_path / 'tiny-32'} | tiny-32 | exchange_rate | context 64 (the checkpoint's own, not 512)" in text
    assert "skips them" not in text
