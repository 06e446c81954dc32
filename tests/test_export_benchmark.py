"""benchmarks/export.py end to end on a tiny budget: it builds every variant, checks parity, times
them and scores one eval task, so a refactor of the export or runtime cannot break it silently."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import eval_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import export  # noqa: E402

EVAL = eval_dir()


@pytest.mark.skipif(EVAL is None, reason="shared/data/eval is not beside the repository")
def test_export_benchmark_runs_and_reports_every_variant(tmp_path, one_torch_thread):
    out = tmp_path / "export.md"
    assert export.main(["--model", "ttm-512", "--threads", "1", "--batches", "1", "--rounds", "2",
                        "--parity-windows", "4", "--calibration-series", "4", "--tasks", "nile",
                        "--output", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    quantized = [v for v in export.VARIANTS if v not in ("torch eager", "onnx fp32")]
    assert set(data["parity"]) == set(export.VARIANTS) - {"torch eager"}
    assert data["parity"]["onnx fp32"]["max_rel"] < 1e-4  # the fp32 graph is the torch model
    assert all(data["parity"][v]["max_rel"] < 0.2 for v in quantized)
    assert data["sizes"]["onnx int8-dynamic x86"] < data["sizes"]["onnx fp32"] / 3
    assert set(data["latency"][0]["results"]) == set(export.VARIANTS)
    assert not data["accuracy"]["errors"]
    assert set(data["accuracy"]["tasks"]["nile"]) == {"SeasonalNaive", *export.VARIANTS}
    assert "this CPU" in out.read_text()
