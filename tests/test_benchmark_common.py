"""benchmarks/common.py: results written all at once, output paths checked first, clean provenance."""

from __future__ import annotations

import argparse
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import common  # noqa: E402


def stored_pair(folder: Path) -> Path:
    md = folder / "run.md"
    md.write_text("old report\n")
    md.with_suffix(".json").write_text('{"old": 1}\n')
    return md


def assert_untouched(md: Path) -> None:
    assert md.read_text() == "old report\n"
    assert md.with_suffix(".json").read_text() == '{"old": 1}\n'
    assert sorted(p.name for p in md.parent.iterdir()) == ["run.json", "run.md"]  # no temporary file left


def test_results_replace_both_files(tmp_path: Path) -> None:
    md = stored_pair(tmp_path)
    assert common.write_results(md, "new report", {"x": float("nan")}) == [md, md.with_suffix(".json")]
    assert md.read_text() == "new report\n"
    assert json.loads(md.with_suffix(".json").read_text()) == {"x": None}


def test_a_failed_write_leaves_the_earlier_results_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = stored_pair(tmp_path)
    real_write = Path.write_text

    def disk_full(self: Path, text: str, *args, **kwargs) -> int:
        if ".run.json." not in self.name:  # the report is written whole ...
            return real_write(self, text, *args, **kwargs)
        real_write(self, text[:5])  # ... its JSON half, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(SystemExit, match="No space left"):
        common.write_results(md, "new report", {"new": 2})
    monkeypatch.undo()
    assert_untouched(md)


def test_a_json_path_that_is_a_folder_writes_nothing(tmp_path: Path) -> None:
    md = tmp_path / "run.md"
    md.write_text("old report\n")
    md.with_suffix(".json").mkdir()
    with pytest.raises(SystemExit, match="could not write"):
        common.write_results(md, "new report", {"new": 2})
    assert md.read_text() == "old report\n" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.md"]


@pytest.mark.parametrize("target", ["folder", "folder.md via json", "/proc/x.md", "file/x.md", "x.json"])
def test_unwritable_outputs_are_refused_up_front(tmp_path: Path, target: str, capsys) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "file").write_text("")
    path = {"folder": tmp_path / "folder", "folder.md via json": tmp_path / "folder.md",
            "file/x.md": tmp_path / "file" / "x.md", "x.json": tmp_path / "x.json"}.get(target, Path(target))
    with pytest.raises(SystemExit) as exit_info:
        common.check_output(path)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_new_folder_is_a_writable_output(tmp_path: Path) -> None:
    assert common.check_output(tmp_path / "a" / "b" / "run.md") == tmp_path / "a" / "b" / "run.md"
    assert not (tmp_path / "a").exists()  # checked, not made


def parser_for() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="")
    parser.add_argument("--series", type=common.positive_int, default=1000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--output", type=Path, default=None)
    return parser


def test_only_a_full_run_may_write_the_stored_results(tmp_path: Path, capsys) -> None:
    parser = parser_for()
    assert common.output_path(parser, parser.parse_args(["--workdir", "w"]), "x.md", ignore=("workdir",)) == (
        common.RESULTS_DIR / "x.md")
    for partial in (["--tasks", "lynx"], ["--series", "10"]):
        with pytest.raises(SystemExit) as exit_info:
            common.output_path(parser, parser.parse_args(partial), "x.md")
        assert exit_info.value.code == 2 and partial[0] in capsys.readouterr().err
    named = parser.parse_args(["--tasks", "lynx", "--output", str(tmp_path / "trial.md")])
    assert common.output_path(parser, named, "x.md") == tmp_path / "trial.md"


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_counts_must_be_positive_integers(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parser_for().parse_args(["--series", value])
    assert exit_info.value.code == 2 and "--series" in capsys.readouterr().err


def test_rewritten_results_do_not_make_a_commit_dirty(tmp_path: Path) -> None:
    def git(*argv: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "speed.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    (tmp_path / "benchmarks" / "results" / "speed.md").write_text("new\n")
    (tmp_path / "benchmarks" / "results" / "new.json").write_text("{}\n")
    assert not common.git_commit(tmp_path).endswith("+dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert common.git_commit(tmp_path).endswith("+dirty")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("argv", [
    ["zero_shot.py", "--tasks", "lynx", "--skip-stats"],  # part of the benchmark, no --output
    ["zero_shot.py", "--min-windows", "-3", "--output", "x.md"],
    ["zero_shot.py", "--reuse", "/nonexistent/nope.json", "--output", "x.md"],
    ["zero_shot.py", "--num-threads", "0", "--output", "x.md"],
    ["zero_shot.py", "--output", "/proc/x.md"],
    ["speed.py", "--series", "-5"],
    ["speed.py", "--repeats", "0", "--output", "x.md"],
    ["speed.py", "--ets-series", "0", "--output", "x.md"],
    ["speed.py", "--horizon", "-3", "--output", "x.md"],
    ["speed.py", "--series", "10"],
    ["compare.py", "/nonexistent/nope.json", "ttm", "AutoARIMA"],
])
def test_bad_arguments_are_one_line_and_exit_2_before_any_work(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / argv[0]), *argv[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "error" in proc.stderr.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # nothing written
