"""The `tsfm` command: output contract, bad input (one line, exit 2, no file), plot, models."""

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import monthly_frame
from tsfm.cli.main import app

runner = CliRunner()


def _run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "data.csv"
    monthly_frame(2).to_csv(path, index=False)
    return path


def test_forecast_to_stdout(tiny_checkpoint, csv):
    code, out, err = _run("forecast", csv, "--model", tiny_checkpoint, "--horizon", "5")
    assert code == 0, err
    from io import StringIO

    fc = pd.read_csv(StringIO(out))
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"]
    assert len(fc) == 10


def test_forecast_to_file_with_levels_and_plot(tiny_checkpoint, csv, tmp_path):
    out, png = tmp_path / "out" / "fc.csv", tmp_path / "fc.png"
    code, stdout, err = _run("forecast", csv, "--model", tiny_checkpoint, "--level", "80", "--quantiles", "0.5",
                             "--output", out, "--plot", png)
    assert code == 0, err
    assert stdout == ""  # data only on stdout when there is no --output
    assert "horizon 18" in err
    fc = pd.read_csv(out)
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_repeated_levels_add_up_and_columns_take_one_spelling(tiny_checkpoint, csv):
    """``-q 1e-1 -q 0.90`` asks for both levels (a repeated option used to keep only its last value);
    a plain decimal is named as written, another spelling as its shortest decimal; a level asked
    for twice comes once."""
    from io import StringIO

    code, out, err = _run("forecast", csv, "--model", tiny_checkpoint, "--horizon", "3",
                          "-q", "1e-1", "-q", "0.90", "--level", "20", "--level", "60,80")
    assert code == 0, err
    fc = pd.read_csv(StringIO(out), dtype={"unique_id": str})
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.2", "0.4", "0.6", "0.8", "0.90"]
    assert (fc["0.1"] <= fc["0.2"]).all() and (fc["0.8"] <= fc["0.90"]).all()


BAD_INPUTS = {
    "missing column": ("unique_id,ds,y\n", "unique_id,ds\na,2020-01-01\na,2020-02-01\na,2020-03-01\n", []),
    "non-numeric": ("", "unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,x\na,2020-03-01,3\na,2020-04-01,4\n", []),
    "bad timestamp": ("", "unique_id,ds,y\na,2020-01-01,1\na,notadate,2\na,2020-03-01,3\na,2020-04-01,4\n", []),
    "duplicate": ("", "unique_id,ds,y\na,2020-01-01,1\na,2020-01-01,2\na,2020-02-01,3\na,2020-03-01,4\n", []),
    "irregular": ("", "unique_id,ds,y\na,2020-01-01 00:00:00,1\na,2020-01-01 00:00:07,2\n"
                  "a,2020-01-01 00:13:00,3\na,2020-01-01 05:00:00,4\na,2020-01-03 00:00:00,5\n", []),
    "too short": ("", "unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,2\n", ["--freq", "MS"]),
    "all nan": ("", "unique_id,ds,y\na,2020-01-01,\na,2020-02-01,\na,2020-03-01,\nb,2020-01-01,1\n"
                "b,2020-02-01,2\nb,2020-03-01,3\n", []),
    "empty": ("", "", []),
    "unknown target": ("", "unique_id,ds,y\na,2020-01-01,1\na,2020-02-01,2\na,2020-03-01,3\n", ["--target", "zz"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_file(case, tiny_checkpoint, tmp_path):
    _, text, extra = BAD_INPUTS[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    out = tmp_path / "out.csv"
    code, stdout, err = _run("forecast", path, "--model", tiny_checkpoint, "--output", out, *extra)
    assert code == 2, (case, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))


def test_missing_file_and_unknown_model(tmp_path, csv):
    code, _, err = _run("forecast", tmp_path / "nope.csv")
    assert code == 2 and "does not exist" in err
    code, _, err = _run("forecast", csv, "--model", "no-such-model")
    assert code == 2 and "unknown model" in err and len(err.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_a_clean_error(tiny_checkpoint, csv, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = _run("forecast", csv, "--model", broken)
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 1


def test_models_lists_families_and_the_suites_rule():
    code, out, _ = _run("models")
    assert code == 0 and "ttm" in out
    assert "from 512 points, among those whose context covers 2 seasons (else ttm-512)" in " ".join(out.split())


def test_version():
    from tsfm import __version__

    code, out, _ = _run("--version")
    assert code == 0 and out.strip() == f"tsfm {__version__}"


def test_console_script_exit_code_and_no_lightning_import(tiny_checkpoint, csv, tmp_path):
    """A real process: the forecast path must not import Lightning (it costs seconds)."""
    argv = ["tsfm", "forecast", str(csv), "--model", str(tiny_checkpoint), "-o", str(tmp_path / "o.csv")]
    code = (
        f"import sys; from tsfm.cli.main import main; sys.argv={argv!r};\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "bad=[m for m in sys.modules if m.startswith(('lightning','pytorch_lightning','hydra'))]\n"
        "assert not bad, bad\nprint('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    bad = subprocess.run([sys.executable, "-m", "tsfm.cli", "forecast", str(tmp_path / "missing.csv")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")


def test_evaluate_prints_metrics(tiny_checkpoint, csv):
    code, out, err = _run("evaluate", csv, "--model", tiny_checkpoint, "--horizon", "6", "--n-windows", "2")
    assert code == 0, err
    scores = dict(line.split("\t") for line in out.strip().splitlines())
    assert {"MASE", "sMAPE", "WQL", "coverage_10_90"} <= set(scores)
    assert float(scores["n_points"]) == 2 * 2 * 6 and float(scores["MASE"]) > 0
    assert scores["season"] == "12"  # monthly dates: the MASE scale's period, said
    code, out, err = _run("evaluate", csv, "--model", tiny_checkpoint, "-H", "6", "--n-windows", "2",
                          "--step-size", "1", "--num-threads", "1", "--season", "3")
    overlapping = dict(line.split("\t") for line in out.strip().splitlines())
    assert code == 0 and overlapping["season"] == "3" and float(overlapping["n_points"]) == 2 * 2 * 6, err
    assert overlapping["MASE"] != scores["MASE"]


def test_multivariate_reads_the_series_together_with_a_model_that_mixes_channels():
    """``--multivariate`` makes the wide file's columns the channels of one item, as
    ``Forecaster(multivariate=True)``: iTransformer's attention across them changes the forecast."""
    from io import StringIO
    from pathlib import Path

    from tsfm import Forecaster

    wide = Path(__file__).resolve().parents[1] / "datasets" / "samples" / "wide_example.csv"
    forecasts = {}
    for flag in (True, False):
        code, out, err = _run("forecast", wide, "--model", "itransformer", "-H", "3", *(["--multivariate"] * flag))
        assert code == 0, err
        forecasts[flag] = pd.read_csv(StringIO(out))
    expected = Forecaster(model="itransformer", horizon=3, multivariate=True).fit(wide).predict()
    pd.testing.assert_series_equal(forecasts[True]["0.5"], expected["0.5"], rtol=1e-6, check_names=False)
    assert forecasts[True]["unique_id"].tolist() == expected["unique_id"].tolist()
    assert not (forecasts[True]["0.5"] - forecasts[False]["0.5"]).abs().lt(1e-3).all()


def test_output_format_follows_the_file_name(tiny_checkpoint, csv, tmp_path):
    """``.parquet`` writes Parquet and ``.gz`` / ``.zip`` compressed CSV, with the forecast a plain
    ``.csv`` holds; a format we do not write (``.json``) is refused before any work, no file left."""
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "4", "-o", tmp_path / "plain.csv")
    assert code == 0, err
    plain = pd.read_csv(tmp_path / "plain.csv", parse_dates=["ds"])
    for name, read in [("fc.parquet", pd.read_parquet), ("fc.csv.gz", pd.read_csv), ("fc.zip", pd.read_csv)]:
        code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "4", "-o", tmp_path / name)
        assert code == 0, err
        got = read(tmp_path / name)
        got["ds"] = pd.to_datetime(got["ds"])
        pd.testing.assert_frame_equal(got, plain, rtol=1e-6)
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-o", tmp_path / "fc.json")
    assert code == 2 and "Parquet (.parquet)" in err and not (tmp_path / "fc.json").exists()


def test_zstd_input_without_zstandard_is_one_line(tmp_path):
    import importlib.util

    if importlib.util.find_spec("zstandard") is not None:
        pytest.skip("zstandard is installed: pandas reads .zst")
    (tmp_path / "data.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd")  # refused by name, before it is read
    code, _, err = _run("forecast", tmp_path / "data.csv.zst")
    assert code == 2 and "needs the zstandard package" in err and len(err.strip().splitlines()) == 1
