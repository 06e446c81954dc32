"""benchmarks/finetune.py: zero_shot.py's tasks and windows, and no baseline row from other windows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import finetune  # noqa: E402


def manifest(folder: Path) -> Path:
    tasks = [{"name": "long", "file": "long.csv", "freq": "MS", "m": 12, "horizon": 6, "n_windows": 2,
              "n_series": 1, "min_length": 400},
             {"name": "short", "file": "short.csv", "freq": "MS", "m": 12, "horizon": 6, "n_windows": 1,
              "n_series": 1, "min_length": 100}]
    (folder / "manifest.json").write_text(json.dumps({"tasks": tasks}))
    return folder


def zero_shot_results(path: Path, n_windows: int, horizon: int = 6) -> Path:
    models = {b: {"scores": {"MASE": 1.0, "sMAPE": 1.0, "WQL": 1.0}, "seconds": 0.0, "error": None}
              for b in finetune.BASELINES}
    path.write_text(json.dumps({"tasks": {"long": {"n_windows": n_windows, "horizon": horizon, "models": models}}}))
    return path


def test_tasks_take_zero_shot_windows_and_the_length_filter(tmp_path: Path) -> None:
    tasks = finetune.long_tasks(manifest(tmp_path), "", min_length=300, min_windows=5)
    assert [(t["name"], t["n_windows"]) for t in tasks] == [("long", 5)]  # manifest's 2 raised as zero_shot does
    named = finetune.long_tasks(tmp_path, "short", min_length=300, min_windows=5)
    assert [t["name"] for t in named] == ["short"]  # a named task runs whatever its length


def test_a_baseline_row_from_other_windows_is_refused(tmp_path: Path) -> None:
    tasks = finetune.long_tasks(manifest(tmp_path), "", min_length=300, min_windows=5)
    rows = finetune.baseline_rows(zero_shot_results(tmp_path / "same.json", 5), tasks)
    assert set(rows["long"]) == set(finetune.BASELINES)
    with pytest.raises(SystemExit, match="no run of long with 5 windows of 6"):
        finetune.baseline_rows(zero_shot_results(tmp_path / "old.json", 2), tasks)
    with pytest.raises(SystemExit, match="no run of long"):
        finetune.baseline_rows(zero_shot_results(tmp_path / "other_h.json", 5, horizon=12), tasks)
