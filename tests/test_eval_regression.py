"""Refactors of the forecast path leave forecasts unchanged: every task of the eval set, through the
Forecaster (forecast and backtest), the CLI and the GluonTS predictor, against the numbers in
tests/data/eval_reference (written by tools/eval_reference.py; 1e-5 relative tolerance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import eval_dir
from tsfm import Forecaster
from tsfm.cli.main import app

REFERENCE = Path(__file__).parent / "data" / "eval_reference"
EVAL = eval_dir()
TASKS = json.loads((EVAL / "manifest.json").read_text())["tasks"] if EVAL is not None else []
pytestmark = pytest.mark.skipif(EVAL is None, reason="shared/data/eval is not beside the repository")


def assert_same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected)
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float),
                                       rtol=1e-5, atol=1e-6, err_msg=column)
        else:
            assert got[column].astype(str).tolist() == expected[column].astype(str).tolist(), column


def reference(task: dict, kind: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / f"{task['name']}.{kind}.csv")


def roundtrip(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as its CSV reads back (the reference went through CSV)."""
    return pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False, float_format="%.9g")))


@pytest.fixture(scope="module")
def fitted(one_torch_thread):
    return {task["name"]: Forecaster(model="ttm", horizon=task["horizon"]).fit(EVAL / task["file"]) for task in TASKS}


@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_forecaster_forecast_and_backtest(task, fitted):
    forecaster = fitted[task["name"]]
    assert_same(roundtrip(forecaster.predict()), reference(task, "forecast"))
    backtest = forecaster.cross_validation(EVAL / task["file"], n_windows=task["n_windows"])
    assert_same(roundtrip(backtest), reference(task, "backtest"))


@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_cli_forecast(task, tmp_path, one_torch_thread):
    out = tmp_path / "forecast.csv"
    result = CliRunner().invoke(app, ["forecast", str(EVAL / task["file"]), "-H", str(task["horizon"]), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert_same(pd.read_csv(out), reference(task, "forecast"))


@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_gluonts_predictor(task, fitted):
    from tsfm.data.gluonts_adapters import to_gluonts

    forecaster = fitted[task["name"]]
    expected = reference(task, "forecast")
    h = task["horizon"]
    forecasts = list(forecaster.to_gluonts_predictor().predict(to_gluonts(forecaster.series_)))
    assert len(forecasts) * h == len(expected)
    for i, forecast in enumerate(forecasts):
        rows = expected.iloc[i * h:(i + 1) * h]
        assert str(forecast.item_id) == str(rows["unique_id"].iloc[0])
        for key in ["mean", *forecaster.quantile_names_]:
            np.testing.assert_allclose(forecast.forecast_array[forecast.forecast_keys.index(key)],
                                       rows[key].to_numpy(float), rtol=1e-5, atol=1e-6)
