"""The edge runtime on its own: a fresh venv with only numpy + onnxruntime runs a copy of tsfm_runtime.

The venv is built once and cached in pytest's cache directory (``.pytest_cache/d/tsfm-edge-venv``),
so later runs only pay for the forecast. If pip cannot reach a package registry the venv test
is skipped with that reason; any other failure fails.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no parallel-build lock
    fcntl = None

import numpy as np
import pytest
import torch

from tsfm.export.onnx_export import export_onnx
from tsfm.hub import load_model
from tsfm.pipeline import torch_step
from tsfm_runtime.rules import floor_at_zero, forecast, from_log_space, pin_constants, rollout, to_log_space

RUNTIME = Path(__file__).resolve().parents[1] / "runtime" / "tsfm_runtime"
ALLOWED_IMPORTS = {"__future__", "json", "re", "collections", "dataclasses", "pathlib", "typing", "numpy",
                   "onnxruntime", "tsfm_runtime"}
NETWORK_ERRORS = ("No matching distribution", "Could not find a version", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Network is unreachable", "Max retries exceeded")
DRIVER = """
import json, sys
import numpy as np
import tsfm_runtime as runtime

model = runtime.load("model.onnx", num_threads=1)
data = np.load("inputs.npz")
np.save("multi.npy", model.predict(data["values"], data["mask"], freq="MS"))
np.save("single.npy", model.predict(data["single"], freq=["h"], horizon=10))
np.save("logged.npy", model.predict(data["values"], data["mask"], freq="MS", log_scale=True))
suite = runtime.load("suite", num_threads=1)
np.save("suite.npy", suite.predict(data["values"], data["mask"], freq="MS", horizon=8))
try:
    runtime.load("broken.onnx")
    error = ""
except runtime.ModelFileError as err:
    error = str(err)
heavy = sorted(m for m in ("torch", "pandas", "tsfm", "scipy") if m in sys.modules)
print(json.dumps({"context": model.context_length, "horizon": model.horizon, "default": model.default_horizon,
                  "quantiles": list(model.quantiles), "vocab": len(model.freq_vocab), "error": error, "heavy": heavy}))
"""


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would let the venv see the host's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _pinned() -> list[str]:
    """numpy and onnxruntime at the host's versions, so the comparison does not drift with releases."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in ("numpy", "onnxruntime")]


@pytest.fixture(scope="session")
def edge_python(request, tmp_path_factory) -> Path:
    """Python of a venv holding only numpy + onnxruntime (built once, cached across runs)."""
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    root = Path(cache.mkdir("tsfm-edge-venv")) if cache is not None else tmp_path_factory.mktemp("edge-venv")
    with open(root / "lock", "w") as lock:  # parallel workers build it once
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_venv(root)


def _build_venv(root: Path) -> Path:
    venv, marker = root / "venv", root / "venv" / "tsfm-ready.json"
    wanted = _pinned()
    python = _venv_python(venv)
    if marker.is_file() and json.loads(marker.read_text()) == wanted and python.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
    pip = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *wanted], capture_output=True, text=True,
                         env=_clean_env())
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        if any(text in pip.stderr for text in NETWORK_ERRORS):
            pytest.skip(f"no package registry reachable to build the numpy + onnxruntime venv: "
                        f"{pip.stderr.strip().splitlines()[-1]}")
        raise RuntimeError(f"pip install {' '.join(wanted)} failed: {pip.stderr.strip()[-500:]}")
    marker.write_text(json.dumps(wanted))
    return python


def forecast_arrays(model, values, mask, freq_id, horizon):
    return rollout(torch_step(model, 256, "cpu"), values, mask, freq_id, horizon, model.quantiles,
                   model.config.prediction_length)


def test_runtime_imports_only_numpy_onnxruntime_and_stdlib():
    names = set()
    for path in RUNTIME.glob("*.py"):
        tree = ast.parse(path.read_text())
        names |= {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= ALLOWED_IMPORTS, names - ALLOWED_IMPORTS


def test_venv_has_no_torch(edge_python):
    probe = subprocess.run([str(edge_python), "-E", "-s", "-c", "import torch"], capture_output=True, text=True,
                           env=_clean_env(), cwd="/")
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    ok = subprocess.run([str(edge_python), "-E", "-s", "-c", "import numpy, onnxruntime"], env=_clean_env(), cwd="/")
    assert ok.returncode == 0


def test_copied_runtime_matches_torch_forecast(edge_python, tiny_checkpoint, tmp_path):
    """Export with horizon 40 (> the model's 16): the copied runtime rolls out by default."""
    torch.set_num_threads(1)
    device = tmp_path / "device"
    device.mkdir()
    export_onnx(tiny_checkpoint, device / "model.onnx", horizon=40)
    shutil.copytree(RUNTIME, device / "tsfm_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    (device / "broken.onnx").write_bytes((device / "model.onnx").read_bytes()[:5000])
    (device / "suite").mkdir()  # a suite of one checkpoint whose intervals are calibrated by 2 backtests
    shutil.copy(device / "model.onnx", device / "suite" / "model.onnx")
    (device / "suite" / "suite.json").write_text(json.dumps(
        {"default": "model", "variants": [{"name": "model", "min_history": 0}], "calibration_windows": 2}))
    (device / "drive.py").write_text(DRIVER)

    rng = np.random.default_rng(11)
    t = np.arange(50)
    values = (200 + 30 * np.sin(2 * np.pi * t / 12)[None, :, None] + rng.normal(0, 3, (4, 50, 3))).astype(np.float32)
    values[0, 10:14, 1] = np.nan
    values[2, :, 2] = 3.0
    mask = np.ones_like(values)
    mask[3, :20, 0] = 0.0
    single = values[1, :, 0] * 0.01
    np.savez(device / "inputs.npz", values=values, mask=mask, single=single)

    model = load_model(tiny_checkpoint)
    pad = np.full((4, 14, 3), np.nan, np.float32)
    padded, padded_mask = np.concatenate([pad, values], 1), np.concatenate([np.zeros_like(pad), mask], 1)
    padded_mask = padded_mask * ~np.isnan(padded)
    want_multi = floor_at_zero(pin_constants(forecast_arrays(model, padded, padded_mask, np.full(4, 11), 40), padded,
                                             padded_mask), padded, padded_mask)
    positive = np.ones((4, 3), dtype=bool)  # every channel of ``values`` is positive: all in log space
    logs = to_log_space(padded, padded_mask, positive)
    in_log = from_log_space(forecast_arrays(model, logs, padded_mask, np.full(4, 11), 40), logs, padded_mask, positive)
    want_logged = floor_at_zero(pin_constants(in_log, padded, padded_mask), padded, padded_mask)
    one = np.concatenate([np.full(14, np.nan, np.float32), single])[None, :, None]
    one_mask = (~np.isnan(one)).astype(np.float32)
    want_single = floor_at_zero(pin_constants(forecast_arrays(model, one, one_mask, np.full(1, 7), 10), one, one_mask),
                                one, one_mask)

    full_mask = mask * ~np.isnan(values)
    want_suite = forecast(torch_step(model, 256, "cpu"), values, full_mask, np.full(4, 11), 8, model.quantiles, 16,
                          context=64, calibration_windows=2)  # 50 steps: backtests cut at 42 and 34

    run = subprocess.run([str(edge_python), "-E", "-s", "drive.py"], cwd=device, capture_output=True, text=True,
                         env=_clean_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []  # no torch, pandas, scipy or tsfm in the device process
    assert (report["context"], report["horizon"], report["default"]) == (64, 16, 40)
    assert report["quantiles"] == list(model.quantiles) and report["vocab"] == 14
    assert "cannot load" in report["error"]
    multi, single_out = np.load(device / "multi.npy"), np.load(device / "single.npy")
    logged = np.load(device / "logged.npy")
    assert multi.shape == logged.shape == (4, 40, 3, 9) and single_out.shape == (1, 10, 1, 9)
    assert np.abs(logged - multi).max() > 1e-2 * np.abs(multi).max()  # log space does change the forecast
    calibrated = np.load(device / "suite.npy")
    assert np.abs(calibrated - multi[:, :8]).max() > 1e-3 * np.abs(multi).max()  # calibration changes the intervals
    for got, want in ((multi, want_multi), (single_out, want_single), (logged, want_logged), (calibrated, want_suite)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert np.all(multi[2, :, 2] == 3.0)
