"""Issue 27: every input a user can type gets a forecast or one clear line (exit 2), and the writer
never damages what is at the output path. One test (or a few) per item of the issue."""

from __future__ import annotations

import gzip
import os
import signal
import stat
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import monthly_frame
from tsfm import Forecaster
from tsfm.cli.main import MAX_HORIZON, app, check_output, default_threads
from tsfm.errors import InputError

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _run(*args, input: str | None = None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    return result.exit_code, result.stdout, result.stderr


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "data.csv"
    monthly_frame(2).to_csv(path, index=False)
    return path


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if a forecast starts: these options must be refused before any work."""
    def boom(*args, **kwargs):
        raise AssertionError("the model ran before the options were checked")

    monkeypatch.setattr(Forecaster, "fit", boom)


# ------------------------------------------------------------------ 1. what -o may replace


def test_output_fifo_is_written_through_not_replaced(tiny_checkpoint, csv, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo) as handle:  # blocks until the writer opens it
            got["text"] = handle.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "3", "-o", fifo)
    reader.join(timeout=60)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file
    assert len(pd.read_csv(StringIO(got["text"]))) == 6
    assert not list(tmp_path.glob(".pipe*"))


def test_output_symlink_is_followed_and_kept(tiny_checkpoint, csv, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "3", "-o", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(pd.read_csv(real)) == 6


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_output_naming_an_input_is_refused_before_the_model(option, csv, tmp_path, no_model):
    """The forecast would be written over the data it came from: refused, through a link too."""
    before = csv.read_bytes()
    link = tmp_path / ("link.png" if option == "--plot" else "link.csv")
    link.symlink_to(csv)
    for target in (link,) if option == "--plot" else (csv, link):
        code, _, err = _run("forecast", csv, option, target)
        assert code == 2 and "is an input file" in _one_line(err)
    assert csv.read_bytes() == before


def test_output_and_plot_naming_one_file_are_refused_before_the_model(csv, tmp_path, no_model):
    code, _, err = _run("forecast", csv, "-o", tmp_path / "a.png", "--plot", tmp_path / "a.png")
    assert code == 2 and "name the same file" in _one_line(err)
    assert not (tmp_path / "a.png").exists()


def test_output_kinds():
    assert check_output("-").kind == "stdout"
    assert check_output("/dev/null").kind == "stream"  # a device is written in place, never renamed over
    assert check_output(os.devnull).path == Path(os.path.realpath(os.devnull))


def test_output_stdout_dash(tiny_checkpoint, csv):
    code, out, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "3", "-o", "-")
    assert code == 0, err
    assert len(pd.read_csv(StringIO(out))) == 6


def test_output_dev_stdout_appends_where_the_shell_points_it(tiny_checkpoint, csv, tmp_path):
    """``-o /dev/stdout >> log`` must append to log, as ``-o -`` does, not reopen and truncate it."""
    log = tmp_path / "log"
    log.write_text("first\n")
    command = f"{sys.executable} -m tsfm.cli forecast {csv} --model {tiny_checkpoint} -H 2 -o /dev/stdout >> {log}"
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "first" and lines[1].startswith("unique_id,ds,") and len(lines) == 2 + 4


@pytest.mark.parametrize("case", ["directory", "under a file"])
def test_output_directory_or_under_file_refused_before_the_model(case, csv, tmp_path, no_model):
    (tmp_path / "file.csv").write_text("x\n")
    target = tmp_path if case == "directory" else tmp_path / "file.csv" / "out.csv"
    code, _, err = _run("forecast", csv, "-o", target)
    assert code == 2
    line = _one_line(err)
    assert ("is a directory" if case == "directory" else "which is a file") in line


@pytest.mark.parametrize("target, words", [("newdir/", "names a directory"), ("", "is empty"),
                                           ("f.csv", "cannot create files in"), ("sub/f.csv", "cannot create files in"),
                                           ("old.csv", "cannot create files in")])
def test_output_that_cannot_become_a_file_refused_before_the_model(target, words, csv, read_only_folder, no_model):
    """A trailing slash names a folder; a folder refusing files is found by trying (root passes every
    permission check), for a new file, one in a folder still to make, and one to replace."""
    (read_only_folder / "old.csv").write_text("kept\n")
    code, _, err = _run("forecast", csv, "-o", target if target in ("newdir/", "") else read_only_folder / target)
    assert code == 2
    assert words in _one_line(err)
    assert sorted(p.name for p in read_only_folder.iterdir()) == ["old.csv"]


def test_read_only_output_file_refused_before_the_model(csv, tmp_path, monkeypatch, no_model):
    """As `>` refuses it; checked with os.access, which a test run as root must be told about."""
    old = tmp_path / "old.csv"
    old.write_text("kept\n")
    old.chmod(0o444)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == old else access(path, mode))
    code, _, err = _run("forecast", csv, "-o", old)
    assert code == 2 and "is read-only" in _one_line(err) and old.read_text() == "kept\n"


def test_plot_keeps_mode_and_symlink_and_leaves_no_temporary_file(tiny_checkpoint, csv, tmp_path):
    out, picture, link = tmp_path / "f.csv", tmp_path / "pics" / "f.png", tmp_path / "link.png"
    picture.parent.mkdir()
    picture.write_bytes(b"old")
    picture.chmod(0o640)
    link.symlink_to(picture)
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "3", "-o", out, "--plot", link)
    assert code == 0, err
    assert len(pd.read_csv(out)) == 6
    assert link.is_symlink() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE(picture.stat().st_mode) == 0o640
    assert sorted(p.name for p in picture.parent.iterdir()) == ["f.png"]
    old = os.umask(0o022)
    try:
        new = tmp_path / "new.png"
        code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "3", "-o", out, "--plot", new)
        assert code == 0, err
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_usage_errors_from_the_console_script_are_one_line(csv, monkeypatch, capsys):
    from tsfm.cli.main import main

    for argv, words in ((["forecast", str(csv), "-H", "1.5"], "'--horizon'"), (["forecast", "--nope"], "--nope"),
                        (["forecast"], "Missing argument"), (["nonsense"], "No such command")):
        monkeypatch.setattr(sys, "argv", ["tsfm", *argv])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 2
        line = _one_line(capsys.readouterr().err)
        assert words in line and "--help" in line
    for argv in (["models"], ["forecast", "--help"]):
        monkeypatch.setattr(sys, "argv", ["tsfm", *argv])
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 0


def test_evaluate_reads_stdin_and_says_what_a_bad_input_is(tiny_checkpoint, tmp_path):
    frame = monthly_frame(2, length=60)
    code, out, err = _run("evaluate", "-", "--model", tiny_checkpoint, "-H", "6", input=frame.to_csv(index=False))
    assert code == 0, err
    assert {line.split("\t")[0] for line in out.splitlines()} >= {"MASE", "WQL"}
    code, _, err = _run("evaluate", tmp_path, "-H", "6")
    assert code == 2 and "is a directory" in _one_line(err)


def test_season_zero_is_refused_not_taken_for_the_default(tiny_checkpoint):
    forecaster = Forecaster(model=tiny_checkpoint, horizon=6)
    with pytest.raises(InputError, match="seasonal period"):
        forecaster.evaluate(monthly_frame(2, length=60), h=6, m=0)


def test_forecaster_names_what_it_takes_for_other_input(tiny_checkpoint, csv):
    for data in (None, 3.5, {"y": [1.0, 2.0]}):
        with pytest.raises(InputError, match="DataFrame or Series, a 1-D array of values, or the path"):
            Forecaster(model=tiny_checkpoint, horizon=3).fit(data)
    for values in ([1.0, 2.0, 3.0], np.arange(40.0)):  # values alone: one series of integer steps
        out = Forecaster(model=tiny_checkpoint, horizon=3).fit(values).predict()
        assert out["ds"].tolist() == [len(values), len(values) + 1, len(values) + 2]
    from pathlib import PurePosixPath

    assert len(Forecaster(model=tiny_checkpoint, horizon=3).fit(PurePosixPath(csv)).predict()) == 6  # any path-like


# ------------------------------------------------------------------ 5. one line, exit 2, before the model


def test_corrupt_gzip_is_one_line(tiny_checkpoint, tmp_path):
    data = bytearray(gzip.compress(monthly_frame(2).to_csv(index=False).encode()))
    for i in range(30, len(data) - 20, 7):
        data[i] ^= 0x55
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(bytes(data))
    code, _, err = _run("forecast", path, "--model", tiny_checkpoint)
    assert code == 2 and "cannot decompress" in _one_line(err)


@pytest.mark.parametrize("args, words", [
    (["--plot", "p.txt"], "unsupported picture type"),
    (["--num-threads", "-1"], "--num-threads"),
    (["--num-threads", "0"], "--num-threads"),
    (["--quantiles", ""], "--quantiles is empty"),
    (["--horizon", str(MAX_HORIZON + 1)], f"limit of {MAX_HORIZON}"),
])
def test_bad_options_fail_before_the_model(args, words, csv, tmp_path, no_model):
    code, _, err = _run("forecast", csv, *[a if a != "p.txt" else tmp_path / a for a in args])
    assert code == 2
    assert words in _one_line(err)


# ------------------------------------------------------------------ 4. quantiles


def test_forecaster_quantiles_empty_string_and_number(tiny_checkpoint):
    df = monthly_frame(1)
    with pytest.raises(InputError, match="quantiles is empty"):
        Forecaster(model=tiny_checkpoint, quantiles=()).fit(df)
    with pytest.raises(InputError, match="quantiles must be a list of levels"):
        Forecaster(model=tiny_checkpoint, quantiles=None).fit(df)
    fc = Forecaster(model=tiny_checkpoint, horizon=3, quantiles="0.1,0.9").fit(df).predict()
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.1", "0.9"]
    fc = Forecaster(model=tiny_checkpoint, horizon=3, quantiles=0.5).fit(df).predict()
    assert list(fc.columns) == ["unique_id", "ds", "mean", "0.5"]
    f = Forecaster(model=tiny_checkpoint, horizon=3, quantiles=(0.9, 0.1, 0.5)).fit(df)
    assert list(f.predict().columns) == ["unique_id", "ds", "mean", "0.1", "0.5", "0.9"]  # ascending, as the CLI
    assert list(f.cross_validation(df).columns[-4:-1]) == ["0.1", "0.5", "0.9"]  # then y


@pytest.mark.parametrize("option", [{"h": 0}, {"h": -2}, {"step_size": 0}, {"h": 2.5}])
def test_cross_validation_refuses_steps_predict_refuses(tiny_checkpoint, option):
    f = Forecaster(model=tiny_checkpoint, horizon=3).fit(monthly_frame(1))
    with pytest.raises(InputError, match="must be a positive integer"):
        f.cross_validation(monthly_frame(1), **option)


def test_level_outside_model_range_fails_at_fit_with_the_range(tiny_checkpoint, csv, monkeypatch):
    import tsfm_runtime.rules

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tsfm_runtime.rules, "rollout", boom)
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "--level", "95")
    assert code == 2 and "[0.1, 0.9]" in _one_line(err) and "up to 80" in err
    help_text = _run("forecast", "--help")[1]
    assert "at most 80" in " ".join(help_text.replace("│", " ").split())  # rich wraps help in boxed columns


# ------------------------------------------------------------------ 3. horizon cap


def test_forecaster_horizon_cap(tiny_checkpoint):
    df = monthly_frame(1)
    with pytest.raises(InputError, match=f"limit of {MAX_HORIZON}"):
        Forecaster(model=tiny_checkpoint, horizon=MAX_HORIZON + 1).fit(df)
    f = Forecaster(model=tiny_checkpoint, horizon=3).fit(df)
    with pytest.raises(InputError, match=f"limit of {MAX_HORIZON}"):
        f.predict(h=MAX_HORIZON + 1)
    import tsfm.forecaster_inputs

    assert tsfm.forecaster_inputs.MAX_HORIZON == MAX_HORIZON


def test_horizon_past_the_last_pandas_date_fails_before_the_model(tiny_checkpoint, csv, monkeypatch):
    import tsfm_runtime.rules

    def boom(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(tsfm_runtime.rules, "rollout", boom)
    code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", str(MAX_HORIZON))  # monthly: year 2800
    assert code == 2 and "2262" in _one_line(err)
    f = Forecaster(model=tiny_checkpoint, horizon=3).fit(monthly_frame(1))
    with pytest.raises(InputError, match="2262"):
        f.predict(h=5000)


# ------------------------------------------------------------------ 9. modes, 10. SIGTERM


def test_new_output_respects_umask_and_overwrite_keeps_mode(tiny_checkpoint, csv, tmp_path):
    old = os.umask(0o002)
    try:
        new = tmp_path / "new.csv"
        code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "2", "-o", new)
        assert code == 0, err
        assert stat.S_IMODE(new.stat().st_mode) == 0o664
        os.umask(0o077)
        kept = tmp_path / "kept.csv"
        kept.write_text("old\n")
        kept.chmod(0o644)
        code, _, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "2", "-o", kept)
        assert code == 0, err
        assert stat.S_IMODE(kept.stat().st_mode) == 0o644 and len(pd.read_csv(kept)) == 4
    finally:
        os.umask(old)


SLOW_WRITER = """
import time
from pathlib import Path
import pandas as pd
from tsfm.cli.main import write_atomically

class Slow(pd.DataFrame):  # no float columns: written by its own to_csv
    def to_csv(self, handle, **kwargs):
        handle.write("unique_id,ds,mean\\n")
        handle.flush()
        print("writing", flush=True)
        time.sleep(60)

write_atomically(Slow(), Path(%r))
"""


def test_sigterm_during_write_cleans_up_and_keeps_old_output(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("old content\n")
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER % str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        assert list(tmp_path.glob(".out.csv.*.tmp"))  # the write is under way
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_text() == "old content\n"
    assert not list(tmp_path.glob(".out.csv*"))


# ------------------------------------------------------------------ 6. save/load, 7. scikit-learn


def test_save_load_round_trip_predicts(tiny_checkpoint, tmp_path):
    f = Forecaster(model=tiny_checkpoint, horizon=5, quantiles="0.1,0.5,0.9").fit(monthly_frame(2))
    expected = f.predict()
    f.save(tmp_path / "my_forecaster")
    loaded = Forecaster.load(tmp_path / "my_forecaster")
    pd.testing.assert_frame_equal(loaded.predict(), expected)
    other = monthly_frame(1, seed=3)
    pd.testing.assert_frame_equal(loaded.predict(other), f.predict(other))


def test_load_without_saved_series_needs_df(tiny_checkpoint, tmp_path):
    from tsfm.forecaster import NotFittedError
    from tsfm.forecaster_inputs import CONTEXT_FILE

    f = Forecaster(model=tiny_checkpoint, horizon=3).fit(monthly_frame(1))
    (f.save(tmp_path / "old") / CONTEXT_FILE).unlink()  # as an earlier version saved it
    loaded = Forecaster.load(tmp_path / "old")
    with pytest.raises(NotFittedError, match="predict\\(df\\)"):
        loaded.predict()
    assert len(loaded.predict(monthly_frame(2))) == 6


def test_sklearn_check_is_fitted_and_clone(tiny_checkpoint):
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    f = Forecaster(model=tiny_checkpoint, horizon=4)
    with pytest.raises(NotFittedError):
        check_is_fitted(f)
    f.fit(monthly_frame(1))
    check_is_fitted(f)
    copy = clone(f)
    assert copy.get_params() == f.get_params() and not hasattr(copy, "model_")
    assert copy.set_params(horizon=7).horizon == 7


# ------------------------------------------------------------------ 2. magnitudes


@pytest.mark.parametrize("factor", [1e300, 1e-300, 1e-318])  # 1e-318: subnormal values, a few digits left
def test_extreme_magnitudes_forecast_like_the_scaled_series(tiny_checkpoint, factor):
    df = monthly_frame(2)
    base = Forecaster(model=tiny_checkpoint, horizon=4).fit(df).predict()
    scaled = Forecaster(model=tiny_checkpoint, horizon=4).fit(df.assign(y=df["y"] * factor)).predict()
    cols = ["mean", "0.1", "0.5", "0.9"]
    got = scaled[cols].to_numpy() / factor
    assert np.isfinite(scaled[cols].to_numpy()).all() and (scaled[cols].to_numpy() != 0).all()
    np.testing.assert_allclose(got, base[cols].to_numpy(), rtol=1e-4)


def test_extreme_magnitudes_from_the_cli_have_no_empty_cells(tiny_checkpoint, tmp_path):
    path = tmp_path / "big.csv"
    df = monthly_frame(1)
    df.assign(y=df["y"] * 1e300).to_csv(path, index=False)
    code, out, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "3")
    assert code == 0, err
    fc = pd.read_csv(StringIO(out))
    quantiles = fc[["mean", "0.1", "0.5", "0.9"]].to_numpy()
    assert np.isfinite(quantiles).all() and (fc["mean"] > 1e301).all()  # float64 text where float32 overflows


# ------------------------------------------------------------------ 11. smaller items


def test_dash_h_is_help_and_capital_h_is_horizon(tiny_checkpoint, csv):
    for command in ("forecast", "evaluate", "finetune", "export"):
        code, out, _ = _run(command, "-h")
        assert code == 0 and "--horizon" in out and "-H" in out and "Usage" in out, command
    code, out, err = _run("forecast", csv, "--model", tiny_checkpoint, "-H", "2")
    assert code == 0 and len(pd.read_csv(StringIO(out))) == 4, err


def test_ids_that_look_missing_are_strings(tiny_checkpoint, tmp_path):
    path = tmp_path / "ids.csv"
    rows = [f"{uid},2020-{m:02d}-01,{v}" for uid in ("NA", "None", "nan") for m, v in zip(range(1, 7), range(6))]
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    code, out, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "2")
    assert code == 0, err
    ids = pd.read_csv(StringIO(out), keep_default_na=False)["unique_id"]
    assert ids.tolist() == ["NA", "NA", "None", "None", "nan", "nan"]


def test_integer_time_index_is_a_step_index(tiny_checkpoint, tmp_path):
    path = tmp_path / "steps.csv"
    for start in (1501, 1):  # years before the dates pandas can hold are steps too
        steps = pd.DataFrame({"time": np.arange(start, start + 40), "y": np.sin(np.arange(40) / 3) + 5})
        steps.to_csv(path, index=False)
        code, out, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "3")
        assert code == 0, err
        assert pd.read_csv(StringIO(out))["ds"].tolist() == [start + 40, start + 41, start + 42]
    gaps = tmp_path / "gaps.csv"
    pd.DataFrame({"t": np.arange(0, 80, 2), "y": np.arange(40.0)}).to_csv(gaps, index=False)
    code, out, err = _run("forecast", gaps, "--model", tiny_checkpoint, "-H", "2", "--time-col", "t")
    assert code == 0, err
    assert pd.read_csv(StringIO(out))["ds"].tolist() == [80, 82]
    code, out, err = _run("forecast", path, "--model", tiny_checkpoint, "--freq", "D")  # a step is a day
    assert code == 0, err
    assert pd.read_csv(StringIO(out))["ds"].tolist() == list(range(41, 55)) and "horizon 14" in err


def test_dates_pandas_cannot_hold_are_one_line(tiny_checkpoint, tmp_path):
    """Tree-ring and other historical series start before 1678: an ISO date there is not
    'unparseable' but out of range, and a coarser-unit column must not wrap around silently."""
    y = np.sin(np.arange(40) / 3) + 5
    path = tmp_path / "old.csv"
    pd.DataFrame({"ds": [f"{1500 + i}-01-01" for i in range(40)], "y": y}).to_csv(path, index=False)
    code, _, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "3")
    assert code == 2 and "outside the dates pandas can hold (1678-2261)" in _one_line(err)
    pd.DataFrame({"ds": [f"01/01/{1500 + i}" for i in range(40)], "y": y}).to_csv(path, index=False)
    code, _, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "3")
    assert code == 2 and "outside the dates pandas can hold" in _one_line(err)
    stamps = np.array([f"{1500 + i}-01-01" for i in range(40)], dtype="datetime64[s]")
    for column in (pd.Series(stamps), pd.Series(stamps).dt.tz_localize("UTC")):
        with pytest.raises(InputError, match="outside the dates pandas can hold"):
            Forecaster(model=str(tiny_checkpoint), horizon=3).fit(pd.DataFrame({"ds": column, "y": y}))


def test_day_first_dates(tiny_checkpoint, tmp_path):
    ds = pd.date_range("2020-01-01", periods=40, freq="D")
    path = tmp_path / "dayfirst.csv"
    pd.DataFrame({"ds": ds.strftime("%d/%m/%Y"), "y": np.arange(40.0) % 7}).to_csv(path, index=False)
    code, out, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "2")
    assert code == 0, err  # 13/01/2020 settles it: read day-first
    assert pd.read_csv(StringIO(out))["ds"].tolist() == ["2020-02-10", "2020-02-11"]
    ambiguous = tmp_path / "ambiguous.csv"  # 01/01..12/01/2020: month starts month-first, January day-first
    pd.DataFrame({"ds": ds[:12].strftime("%d/%m/%Y"), "y": np.arange(12.0)}).to_csv(ambiguous, index=False)
    code, _, err = _run("forecast", ambiguous, "--model", tiny_checkpoint)
    assert code == 0 and "read month-first" in err
    irregular = tmp_path / "irregular.csv"  # days 1-12 of January and February: irregular month-first
    days = ds[:12].append(pd.date_range("2020-02-01", periods=12, freq="D"))
    pd.DataFrame({"ds": days.strftime("%d/%m/%Y"), "y": np.arange(24.0)}).to_csv(irregular, index=False)
    code, _, err = _run("forecast", irregular, "--model", tiny_checkpoint)
    assert code == 2 and "day-first" in _one_line(err)


def test_pipe_input(tiny_checkpoint, tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as handle:
            handle.write(monthly_frame(1).to_csv(index=False))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    code, out, err = _run("forecast", fifo, "--model", tiny_checkpoint, "-H", "2")
    writer.join(timeout=60)
    assert code == 0, err
    assert len(pd.read_csv(StringIO(out))) == 2


def test_stdin_input(tiny_checkpoint):
    code, out, err = _run("forecast", "-", "--model", tiny_checkpoint, "-H", "2",
                          input=monthly_frame(2).to_csv(index=False))
    assert code == 0, err
    assert len(pd.read_csv(StringIO(out))) == 4


def test_models_does_not_list_ensemble_as_a_model_name():
    code, out, _ = _run("models")
    assert code == 0 and "ttm" in out
    assert not any(line.split()[:1] == ["ensemble"] for line in out.splitlines())
    code, _, err = _run("forecast", "x.csv", "--model", "ensemble")
    assert code == 2


def test_no_runtime_warnings_on_stderr(tmp_path):
    path = tmp_path / "odd.csv"
    df = monthly_frame(1)
    df.loc[5:20, "y"] = np.nan  # a long gap, huge values: numpy's notes must not leak
    df.assign(y=df["y"] * 1e35).to_csv(path, index=False)  # the shipped suite's log-space rule overflowed float32
    result = subprocess.run([sys.executable, "-m", "tsfm.cli", "forecast", str(path), "-H", "20", "--level", "50"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "default"})
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr


def test_default_threads_follow_omp_and_affinity(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))


# ------------------------------------------------------------------ 8. time zones


def test_tz_daily_across_dst_keeps_zone(tiny_checkpoint):
    ds = pd.date_range("2021-03-01", periods=60, freq="D", tz="Europe/Paris")  # DST starts 2021-03-28
    df = pd.DataFrame({"unique_id": "x", "ds": ds, "y": np.arange(60.0) % 7 + 10})
    fc = Forecaster(model=tiny_checkpoint, horizon=3).fit(df).predict()
    assert str(fc["ds"].dt.tz) == "Europe/Paris"
    assert fc["ds"].tolist() == list(pd.date_range("2021-04-30", periods=3, freq="D", tz="Europe/Paris"))
    text = pd.DataFrame({"unique_id": "x", "ds": ds.astype(str), "y": df["y"]})  # +01:00 then +02:00 as text
    fc = Forecaster(model=tiny_checkpoint, horizon=2).fit(text).predict()
    assert [str(t) for t in fc["ds"]] == ["2021-04-30 00:00:00+02:00", "2021-05-01 00:00:00+02:00"]


def test_tz_monthly_and_hourly_keep_zone(tiny_checkpoint):
    ds = pd.date_range("2015-01-01", periods=48, freq="MS", tz="America/New_York")
    df = pd.DataFrame({"unique_id": "m", "ds": ds, "y": np.arange(48.0) % 12 + 3})
    f = Forecaster(model=tiny_checkpoint, horizon=2).fit(df)
    assert f.freq_ == "MS"
    assert f.predict()["ds"].tolist() == list(pd.date_range("2019-01-01", periods=2, freq="MS", tz="America/New_York"))
    hours = pd.date_range("2021-10-30", periods=72, freq="h", tz="Europe/Berlin")  # DST ends 2021-10-31
    fc = Forecaster(model=tiny_checkpoint, horizon=2).fit(
        pd.DataFrame({"unique_id": "h", "ds": hours, "y": np.arange(72.0) % 24})).predict()
    assert str(fc["ds"].dt.tz) == "Europe/Berlin"
    assert fc["ds"].tolist() == [hours[-1] + pd.Timedelta(hours=1), hours[-1] + pd.Timedelta(hours=2)]


# ------------------------------------------------------------------ edge runtime


def _edge_model(fill: float | None = None):
    """An EdgeModel on a stand-in graph (no file): it forecasts each window's last value, or ``fill``,
    and NaN for windows outside rules.SAFE_MAGNITUDE (which the runtime must rescale first)."""
    from tsfm_runtime.edge import EdgeModel
    from tsfm_runtime.rules import SAFE_MAGNITUDE

    class Graph:
        def run(self, outputs, feeds):
            values = feeds["past_values"]
            last = values[:, -1:, :, None] if fill is None else np.full(values[:, -1:, :, None].shape, fill)
            size = np.nanmax(np.abs(values), axis=1)[:, None, :, None]
            last = np.where((size > SAFE_MAGNITUDE[1]) | (size < SAFE_MAGNITUDE[0]), np.nan, last)
            return [np.broadcast_to(last, (len(values), 8, values.shape[2], 3)).astype(np.float32)]

    model = object.__new__(EdgeModel)
    model.context_length, model.horizon, model.default_horizon, model.batch_size = 32, 8, None, 256
    model.quantiles, model.channels, model.freq_vocab, model.input_names = (0.1, 0.5, 0.9), None, ("oov",), ()
    model.session = Graph()
    return model


@pytest.mark.parametrize("values, words", [
    (np.full(20, np.nan), "no observed value"),
    (np.r_[np.ones(19), np.inf], "infinite"),
    (np.r_[np.ones(19), 1e300], "outside what the float32 forecast holds.*divide"),
    (np.full(20, 1e-300), "outside what the float32 forecast holds.*multiply"),
])
def test_edge_runtime_refuses_what_it_cannot_forecast(values, words):
    model = _edge_model()
    assert model.predict(np.ones(20), horizon=8).shape == (1, 8, 1, 3)
    with pytest.raises(ValueError, match=words) as info:
        model.predict(values)
    assert "\n" not in str(info.value)


def test_edge_runtime_says_when_the_graph_overflows():
    with pytest.raises(ValueError, match="not finite") as info:
        _edge_model(fill=np.inf).predict(np.linspace(1.0, 2.0, 20))  # not constant: those are pinned
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("size", [1e36, 1e18, 1e-24, 1e-35])
def test_edge_runtime_forecasts_any_magnitude_float32_holds(size):
    """As the package: a series outside rules.SAFE_MAGNITUDE is divided by a power of ten before the
    graph and its forecast multiplied back, so huge and tiny series forecast in their own units."""
    values = size * np.r_[np.linspace(1.0, 2.0, 19), 3.0]
    forecast = _edge_model().predict(np.stack([values, np.linspace(1.0, 3.0, 20)]), horizon=4)
    np.testing.assert_allclose(forecast[0, :, 0, 1], 3.0 * size, rtol=1e-6)
    np.testing.assert_allclose(forecast[1, :, 0, 1], 3.0, rtol=1e-6)  # the other series is left alone


def test_edge_runtime_default_horizon_is_the_packages():
    """Without horizon=, a file exported without one forecasts its frequency's default horizon (14 steps
    for no frequency, as the package gives integer steps), and a file exported with one forecasts it."""
    from tsfm_runtime.edge import default_horizon

    series = np.linspace(1.0, 2.0, 40)
    model = _edge_model()
    steps = {freq: model.predict(series, freq=freq).shape[1] for freq in ("MS", "QS-DEC", "YS", "h", "7h", None, 0)}
    assert steps == {"MS": 18, "QS-DEC": 8, "YS": 6, "h": 48, "7h": 14, None: 14, 0: 14}
    assert default_horizon(["YS", "MS"]) == 18 and default_horizon(11) == 18  # the longest; token 11 is "M"
    model.default_horizon = 40  # exported with --horizon 40
    assert model.predict(series, freq="MS").shape[1] == 40


def test_edge_runtime_says_when_onnxruntime_is_too_old(tmp_path, monkeypatch):
    import tsfm_runtime.edge as edge

    def too_old(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:" + " x" * 150
                           + " Unsupported model IR version: 10, max supported IR version: 9")

    path = tmp_path / "m.onnx"
    path.write_bytes(b"\0")
    monkeypatch.setattr(edge.ort, "InferenceSession", too_old)
    with pytest.raises(edge.ModelFileError, match=r"max supported IR version: 9\): install onnxruntime 1\.18"):
        edge.load(path)


def test_a_context_of_empty_rows_is_refused_not_forecast_as_zero(tiny_checkpoint, tmp_path):
    """Trailing rows without values longer than the model's context (64 steps) leave it nothing to
    read: one line, exit 2, no output file; fewer trailing empty rows still forecast."""
    frame = monthly_frame(2, length=150)
    step, last = frame.groupby("unique_id").cumcount(), frame["unique_id"] == frame["unique_id"].iloc[-1]
    values = frame["y"].copy()
    frame.loc[last & (step >= step[last].max() - 70), "y"] = np.nan  # the last 71 rows of one series
    path, out = tmp_path / "gappy.csv", tmp_path / "out.csv"
    frame.to_csv(path, index=False)
    code, _, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "4", "-o", out)
    name = frame["unique_id"].iloc[-1]
    assert code == 2 and f"series '{name}' has no observed value in its last 64 steps" in _one_line(err)
    assert not out.exists()
    frame["y"] = values.where(~last | (step < step[last].max() - 49))  # its last 50 rows only
    frame.to_csv(path, index=False)
    code, _, err = _run("forecast", path, "--model", tiny_checkpoint, "-H", "4", "-o", out)
    assert code == 0 and len(pd.read_csv(out)) == 8, err


def test_ctrl_c_is_said_and_exits_130(monkeypatch, capsys):
    """Click hands a Ctrl-C back as exit code 130 without a word; the CLI says it was interrupted."""
    import tsfm.cli.main as cli

    monkeypatch.setattr(cli, "app", lambda standalone_mode: 130)
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 130 and capsys.readouterr().err == "interrupted\n"


def test_written_numbers_read_back_as_the_same_float32(tmp_path):
    from tsfm.cli.output import check_output, write_output

    rng = np.random.default_rng(0)
    values = (rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000)).astype(np.float32)
    values[:3] = [123456792.0, np.nan, -np.inf]
    frame = pd.DataFrame({"unique_id": ["a,b"] * 2000, "mean": values.astype(np.float64), "big": 1e300})
    for name in ("out.csv", "out.csv.gz"):
        write_output(frame, check_output(tmp_path / name))
        back = pd.read_csv(tmp_path / name)
        assert (back["unique_id"] == "a,b").all() and (back["big"] == 1e300).all()
        np.testing.assert_array_equal(back["mean"].to_numpy(np.float32), values)  # bit for bit, NaN and inf too
